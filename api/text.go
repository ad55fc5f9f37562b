package api

import (
	"fmt"
	"net/http"
	"net/url"
	"unicode/utf8"

	"github.com/esmd/esmd/esm"
)

// invalidText describes the first place where a JSON body is not valid
// UTF-8 text, or "" when it is. encoding/json would silently store U+FFFD
// for an invalid byte and for a \u escape of half a surrogate pair; AWS
// refuses such a body, and so does esmd.
func invalidText(b []byte) string {
	for i := 0; i < len(b); {
		c := b[i]
		if c >= utf8.RuneSelf {
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n == 1 {
				return utf8Error(b, i)
			}
			i += n
			continue
		}
		if c != '\\' || i+1 >= len(b) {
			i++
			continue
		}
		if b[i+1] != 'u' {
			i++
			if b[i] < utf8.RuneSelf {
				i++ // \" \\ \n ...: the escaped byte does not start an escape
			}
			continue
		}
		r, ok := hex4(b[i+2:])
		switch {
		case !ok: // not an escape encoding/json accepts: its error will say so
			i += 2
		case r >= 0xDC00 && r <= 0xDFFF:
			return fmt.Sprintf("Invalid UTF-16 surrogate \\u%04x at offset %d: a low surrogate without a high one", r, i)
		case r >= 0xD800 && r <= 0xDBFF:
			lo, ok := rune(0), len(b) >= i+12 && b[i+6] == '\\' && b[i+7] == 'u'
			if ok {
				lo, ok = hex4(b[i+8:])
			}
			if !ok || lo < 0xDC00 || lo > 0xDFFF {
				return fmt.Sprintf("Invalid UTF-16 surrogate \\u%04x at offset %d: a high surrogate without a low one", r, i)
			}
			i += 12
		default:
			i += 6
		}
	}
	return ""
}

// utf8Error describes the invalid sequence at b[i] in the words of the
// JSON parser behind AWS's front end: a byte that cannot start a sequence
// is a "start byte", a bad continuation a "middle byte".
func utf8Error(b []byte, i int) string {
	kind, at := "start", i
	if c := b[i]; c >= 0xC2 && c <= 0xF4 {
		// A valid lead: the culprit is the first byte after it that does
		// not continue the sequence, else (an overlong or surrogate form)
		// the one right after it.
		n := 2
		if c >= 0xF0 {
			n = 4
		} else if c >= 0xE0 {
			n = 3
		}
		kind, at = "middle", i+1
		for j := i + 1; j < i+n && j < len(b); j++ {
			if b[j]&0xC0 != 0x80 {
				at = j
				break
			}
		}
		if at >= len(b) {
			return fmt.Sprintf("Unexpected end-of-input in a UTF-8 sequence starting with byte 0x%02x", c)
		}
	}
	line, col := 1, 1
	for _, c := range b[:at] {
		if c == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return fmt.Sprintf("Invalid UTF-8 %s byte 0x%02x\n at [Source: (byte[]); line: %d, column: %d]", kind, b[at], line, col)
}

// hex4 decodes the 4 hex digits at the start of b.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			r = r<<4 | rune(c-'0')
		case 'a' <= c && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case 'A' <= c && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// checkParams refuses a request whose path or query parameters, once
// percent-decoded, are not valid UTF-8 (a UUID, function name or tag key
// would otherwise be looked up or stored with U+FFFD).
func checkParams(r *http.Request) error {
	if !utf8.ValidString(r.URL.Path) {
		return &esm.Error{Type: esm.ErrTypeInvalidParameterValue, Status: http.StatusBadRequest,
			Message: "The request path is not valid UTF-8 once percent-decoded"}
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil // the handler reads what it can, as before
	}
	for k, vs := range q {
		ok := utf8.ValidString(k)
		for _, v := range vs {
			ok = ok && utf8.ValidString(v)
		}
		if !ok {
			return &esm.Error{Type: esm.ErrTypeInvalidParameterValue, Status: http.StatusBadRequest,
				Message: fmt.Sprintf("The query parameter %q is not valid UTF-8 once percent-decoded", k)}
		}
	}
	return nil
}
