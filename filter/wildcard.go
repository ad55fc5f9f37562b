package filter

import (
	"bytes"
	"strconv"
)

// wildcard is a compiled "wildcard" operand: literal pieces separated by
// '*', each '*' matching any run of bytes (possibly empty).
type wildcard struct {
	parts [][]byte
}

// compileWildcard parses s with the reference engine's rules: "\*" is a
// literal star, "\\" a literal backslash, any other backslash and any "**"
// are errors. Positions in messages count bytes of the operand wrapped in
// double quotes, as the reference engine reports them.
func compileWildcard(s string) (*wildcard, string) {
	w := &wildcard{}
	var cur []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '*':
			if i+1 < len(s) && s[i+1] == '*' {
				return nil, "Consecutive wildcard characters at pos " + strconv.Itoa(i+1)
			}
			w.parts = append(w.parts, cur)
			cur = nil
		case '\\':
			if i+1 < len(s) && (s[i+1] == '*' || s[i+1] == '\\') {
				cur = append(cur, s[i+1])
				i++
				continue
			}
			return nil, "Invalid escape character at pos " + strconv.Itoa(i+1)
		default:
			cur = append(cur, c)
		}
	}
	w.parts = append(w.parts, cur)
	return w, ""
}

// match reports whether v matches. The greedy scan is O(len(v)*len(parts))
// at worst, so hostile values cannot make it blow up.
func (w *wildcard) match(v []byte) bool {
	p := w.parts
	if len(p) == 1 {
		return bytes.Equal(v, p[0])
	}
	first, last := p[0], p[len(p)-1]
	if len(v) < len(first)+len(last) || !bytes.HasPrefix(v, first) || !bytes.HasSuffix(v, last) {
		return false
	}
	v = v[len(first) : len(v)-len(last)]
	for _, mid := range p[1 : len(p)-1] {
		i := bytes.Index(v, mid)
		if i < 0 {
			return false
		}
		v = v[i+len(mid):]
	}
	return true
}
