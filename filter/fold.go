package filter

import (
	"unicode"
	"unicode/utf8"
)

// foldAppend appends the case-folded form of s to dst. Two strings are
// equal ignoring case exactly when their folded forms are byte-equal; this
// is how equals-ignore-case and its prefix/suffix variants compare without
// allocating per event.
func foldAppend(dst, s []byte) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			dst = append(dst, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && n == 1 {
			dst = append(dst, c)
			i++
			continue
		}
		dst = utf8.AppendRune(dst, unicode.ToLower(unicode.ToUpper(r)))
		i += n
	}
	return dst
}

func foldString(s string) string { return string(foldAppend(nil, []byte(s))) }
