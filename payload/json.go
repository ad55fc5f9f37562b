package payload

import (
	"encoding/base64"
	"encoding/binary"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// MaxPayloadSize is the largest synchronous Invoke request AWS accepts
// (6 MB, measured as 6,291,456 bytes). The batcher cuts a batch before its
// encoded event would pass it.
const MaxPayloadSize = 6 << 20

const hexUpper = "0123456789ABCDEF"

// safe[b] is true for ASCII bytes that are copied verbatim inside a JSON
// string.
var safe = func() (t [256]bool) {
	for b := 0x20; b < 0x80; b++ {
		t[b] = true
	}
	t['"'] = false
	t['\\'] = false
	return t
}()

// AppendString appends s as a quoted JSON string.
//
// The escaping is the one of Jackson, the JSON library of the Java pollers
// that produce AWS's events: only '"', '\\' and control characters below
// U+0020 are escaped (\b \t \n \f \r, else \u00XX with upper-case hex);
// '/', '<', '>', '&', U+2028, U+2029 and all other non-ASCII characters are
// written as raw UTF-8. Invalid UTF-8 (which a Java string cannot hold) is
// replaced by U+FFFD, as Java's decoder does.
func AppendString[S ~string | ~[]byte](dst []byte, s S) []byte {
	dst = append(dst, '"')
	dst = appendEscaped(dst, s)
	return append(dst, '"')
}

// Word-at-a-time scanning: swarSpecial reports whether any of the 8 bytes
// of w needs attention (a control character, '"', '\\' or a non-ASCII byte).
const (
	swarLo = 0x0101010101010101
	swarHi = 0x8080808080808080
)

func swarSpecial(w uint64) bool {
	ctl := (w - 0x20*swarLo) &^ w
	q := w ^ ('"' * swarLo)
	q = (q - swarLo) &^ q
	bs := w ^ ('\\' * swarLo)
	bs = (bs - swarLo) &^ bs
	return (ctl|q|bs|w)&swarHi != 0
}

func load8[S ~string | ~[]byte](s S, i int) uint64 {
	_ = s[i+7]
	return uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
		uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
}

func appendEscaped[S ~string | ~[]byte](dst []byte, s S) []byte {
	start := 0
	for i := 0; i < len(s); {
		for i+8 <= len(s) && !swarSpecial(load8(s, i)) {
			i += 8
		}
		if i >= len(s) {
			break
		}
		b := s[i]
		if safe[b] {
			i++
			continue
		}
		if b >= utf8.RuneSelf {
			r, size := decodeRune(s[i:])
			if r == utf8.RuneError && size == 1 {
				dst = append(dst, s[start:i]...)
				dst = append(dst, "\ufffd"...)
				i++
				start = i
				continue
			}
			i += size
			continue
		}
		dst = append(dst, s[start:i]...)
		switch b {
		case '"', '\\':
			dst = append(dst, '\\', b)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexUpper[b>>4], hexUpper[b&0xF])
		}
		i++
		start = i
	}
	return append(dst, s[start:]...)
}

func decodeRune[S ~string | ~[]byte](s S) (rune, int) {
	switch v := any(s).(type) {
	case string:
		return utf8.DecodeRuneInString(v)
	case []byte:
		return utf8.DecodeRune(v)
	}
	// Named types: fall back to a conversion of at most 4 bytes.
	n := min(len(s), utf8.UTFMax)
	return utf8.DecodeRuneInString(string(s[:n]))
}

// StringSize returns len(AppendString(nil, s)) without allocating.
func StringSize[S ~string | ~[]byte](s S) int {
	n := 2
	for i := 0; i < len(s); {
		for i+8 <= len(s) && !swarSpecial(load8(s, i)) {
			i += 8
			n += 8
		}
		if i >= len(s) {
			break
		}
		b := s[i]
		if safe[b] {
			n++
			i++
			continue
		}
		if b >= utf8.RuneSelf {
			r, size := decodeRune(s[i:])
			if r == utf8.RuneError && size == 1 {
				n += 3
				i++
				continue
			}
			n += size
			i += size
			continue
		}
		switch b {
		case '"', '\\', '\n', '\r', '\t', '\b', '\f':
			n += 2
		default:
			n += 6
		}
		i++
	}
	return n
}

// AppendBase64 appends b as a quoted standard (padded) base64 string.
func AppendBase64(dst []byte, b []byte) []byte {
	n := base64.StdEncoding.EncodedLen(len(b))
	dst = slices.Grow(dst, n+2)
	dst = append(dst, '"')
	out := dst[len(dst) : len(dst)+n]
	// Six bytes (eight characters) at a time, two characters per table
	// lookup: Kafka values are most of a Kafka event, and this is about
	// twice as fast as base64.Encoding's three bytes at a time
	// (BenchmarkBase64). Each step loads eight bytes, so it stops eight
	// before the end; the rest, a multiple of three bytes in, is the
	// standard encoder's, padding included.
	si, di := 0, 0
	for ; len(b)-si >= 8; si, di = si+6, di+8 {
		v := binary.BigEndian.Uint64(b[si:])
		binary.LittleEndian.PutUint64(out[di:], uint64(base64Pairs[v>>52])|uint64(base64Pairs[v>>40&0xFFF])<<16|
			uint64(base64Pairs[v>>28&0xFFF])<<32|uint64(base64Pairs[v>>16&0xFFF])<<48)
	}
	base64.StdEncoding.Encode(out[di:], b[si:])
	dst = dst[:len(dst)+n]
	return append(dst, '"')
}

// base64Pairs holds the two base64 characters of each 12-bit value, the
// first in the low byte.
var base64Pairs = func() (t [4096]uint16) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := range t {
		t[i] = uint16(alphabet[i>>6]) | uint16(alphabet[i&63])<<8
	}
	return t
}()

func appendStringOrNull(dst []byte, s string) []byte {
	if s == "" {
		return append(dst, "null"...)
	}
	return AppendString(dst, s)
}

func appendBool(dst []byte, v bool) []byte {
	if v {
		return append(dst, "true"...)
	}
	return append(dst, "false"...)
}

// AppendEpochSeconds appends t as a JSON number of seconds since the Unix
// epoch with millisecond precision: "1545084650.987", "1545084650.98",
// "1480642020" (trailing zeros of the fraction are dropped, and a whole
// second has no fraction, as in the DynamoDB example). This is the form of
// Kinesis approximateArrivalTimestamp and DynamoDB
// ApproximateCreationDateTime in AWS's examples. (AWS never shows a Kinesis
// timestamp that falls on a whole second; esmd writes it as an integer.)
func AppendEpochSeconds(dst []byte, t time.Time) []byte {
	ms := t.UnixMilli()
	sec, frac := ms/1000, ms%1000
	if frac < 0 {
		sec--
		frac += 1000
	}
	dst = strconv.AppendInt(dst, sec, 10)
	if frac == 0 {
		return dst
	}
	d := [4]byte{'.', byte('0' + frac/100), byte('0' + frac/10%10), byte('0' + frac%10)}
	n := 4
	for d[n-1] == '0' {
		n--
	}
	return append(dst, d[:n]...)
}

// AppendISOMillis appends t in UTC as a quoted ISO-8601 string with
// milliseconds, "2019-11-14T00:38:06.021Z" (OnFailure timestamps, Kinesis
// batch info).
func AppendISOMillis(dst []byte, t time.Time) []byte {
	dst = append(dst, '"')
	dst = t.UTC().AppendFormat(dst, "2006-01-02T15:04:05.000Z")
	return append(dst, '"')
}

// AppendISOSeconds appends t in UTC as a quoted ISO-8601 string with whole
// seconds, "2019-11-14T00:13:19Z" (tumbling windows, DynamoDB batch info).
func AppendISOSeconds(dst []byte, t time.Time) []byte {
	dst = append(dst, '"')
	dst = t.UTC().AppendFormat(dst, "2006-01-02T15:04:05Z")
	return append(dst, '"')
}
