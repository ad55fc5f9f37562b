package bench

import (
	"bytes"
	"strconv"
)

// tokenPrefix starts every record's token: BENCH:<id>:<unix nanos>:<m|s>.
const tokenPrefix = "BENCH:"

// MatchField is the record field a filter tests: "kind" is "match" in the
// share of records that should pass the filter (--match-share) and "skip"
// in the others.
const MatchField = "kind"

// Record builds record id's body: a JSON object of about size bytes,
//
//	{"bk":"BENCH:<id>:<produced unix nanos>:<m|s>","kind":"match"|"skip","pad":"xxx..."}
//
// The token comes first, so the endpoint finds it in the first bytes of a
// base64 data field. A size smaller than the fixed part gives no padding.
func Record(dst []byte, id uint64, producedNanos int64, match bool, size int) []byte {
	start := len(dst)
	dst = append(dst, `{"bk":"`+tokenPrefix...)
	dst = strconv.AppendUint(dst, id, 10)
	dst = append(dst, ':')
	dst = strconv.AppendInt(dst, producedNanos, 10)
	if match {
		dst = append(dst, `:m","kind":"match","pad":"`...)
	} else {
		dst = append(dst, `:s","kind":"skip","pad":"`...)
	}
	for pad := size - (len(dst) - start) - 2; pad > 0; pad-- {
		dst = append(dst, 'x')
	}
	return append(dst, '"', '}')
}

// token is what the endpoint reads from a record.
type token struct {
	id       uint64
	produced int64 // unix nanos
	match    bool
}

// parseToken reads the token at the start of b (which starts right after
// tokenPrefix); ok is false when b does not hold a whole token.
func parseToken(b []byte) (t token, ok bool) {
	i := bytes.IndexByte(b, ':')
	if i <= 0 {
		return t, false
	}
	id, err := strconv.ParseUint(string(b[:i]), 10, 64)
	if err != nil {
		return t, false
	}
	b = b[i+1:]
	i = bytes.IndexByte(b, ':')
	if i <= 0 || i+1 >= len(b) {
		return t, false
	}
	ts, err := strconv.ParseInt(string(b[:i]), 10, 64)
	if err != nil {
		return t, false
	}
	switch b[i+1] {
	case 'm':
		t.match = true
	case 's':
	default:
		return t, false
	}
	t.id, t.produced = id, ts
	return t, true
}
