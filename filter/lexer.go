package filter

import (
	"strconv"
	"unicode/utf8"
)

// The pattern lexer is a small pull tokenizer in the style of the Jackson
// streaming parser the reference engine uses, so that a pattern is checked
// in the same order and syntax errors read the same way.

type tokKind uint8

const (
	tEOF tokKind = iota
	tBeginObj
	tEndObj
	tBeginArr
	tEndArr
	tName
	tString
	tNumber
	tTrue
	tFalse
	tNull
)

type lexState uint8

const (
	stRoot lexState = iota
	stRootDone
	stObjStart
	stObjName  // after a field name: expect ':' then a value
	stObjAfter // after a member value: expect ',' or '}'
	stArrStart
	stArrAfter
)

type lexer struct {
	src   string
	pos   int
	state lexState
	stack []byte // '{' or '[' per open container
	kind  tokKind
	text  string // name, string value or number literal
	end   int    // offset just past the current token
	err   *PatternError
}

func newLexer(src string) *lexer { return &lexer{src: src} }

const expectValue = "(JSON String, Number, Array, Object or token 'null', 'true' or 'false')"

// fail records a syntax error at byte offset off (reported 1-based).
func (l *lexer) fail(off int, reason string) tokKind {
	if l.err == nil {
		line, col := l.location(off)
		l.err = &PatternError{Reason: reason, Line: line, Column: col, Pattern: l.src}
	}
	l.kind = tEOF
	return tEOF
}

// location turns a byte offset into the 1-based line and column the
// reference engine's parser reports for it.
func (l *lexer) location(off int) (int, int) {
	if off > len(l.src) {
		off = len(l.src)
	}
	line, start := 1, 0
	for i := 0; i < off; i++ {
		if l.src[i] == '\n' {
			line++
			start = i + 1
		}
	}
	return line, utf8.RuneCountInString(l.src[start:off]) + 1
}

func describeChar(c byte) string {
	if c < utf8.RuneSelf {
		return "('" + string(rune(c)) + "' (code " + strconv.Itoa(int(c)) + "))"
	}
	return "((code " + strconv.Itoa(int(c)) + "))"
}

func (l *lexer) skipWS() {
	for l.pos < len(l.src) {
		switch l.src[l.pos] {
		case ' ', '\t', '\n', '\r':
			l.pos++
		default:
			return
		}
	}
}

func (l *lexer) eof() tokKind {
	if len(l.stack) > 0 && l.stack[len(l.stack)-1] == '{' {
		return l.fail(l.pos, "Unexpected end-of-input: expected close marker for OBJECT")
	}
	return l.fail(l.pos, "Unexpected end-of-input: expected close marker for ARRAY")
}

// next advances to the next token and returns its kind; after an error it
// keeps returning tEOF and l.err is set.
func (l *lexer) next() tokKind {
	if l.err != nil {
		return tEOF
	}
	l.skipWS()
	switch l.state {
	case stRoot:
		if l.pos >= len(l.src) {
			l.kind = tEOF
			return tEOF
		}
		return l.value()
	case stRootDone:
		if l.pos < len(l.src) {
			return l.fail(l.pos, "Unexpected character "+describeChar(l.src[l.pos])+": expected end-of-input")
		}
		l.kind = tEOF
		return tEOF
	case stObjStart, stObjAfter:
		if l.pos >= len(l.src) {
			return l.eof()
		}
		c := l.src[l.pos]
		if c == '}' && (l.state == stObjStart || l.state == stObjAfter) {
			l.pos++
			return l.closeContainer(tEndObj)
		}
		if l.state == stObjAfter {
			if c != ',' {
				return l.fail(l.pos, "Unexpected character "+describeChar(c)+": was expecting comma to separate Object entries")
			}
			l.pos++
			l.skipWS()
			if l.pos >= len(l.src) {
				return l.eof()
			}
			c = l.src[l.pos]
		}
		if c != '"' {
			return l.fail(l.pos, "Unexpected character "+describeChar(c)+": was expecting double-quote to start field name")
		}
		s, ok := l.str()
		if !ok {
			return tEOF
		}
		l.text = s
		l.state = stObjName
		l.kind = tName
		l.end = l.pos
		return tName
	case stObjName:
		if l.pos >= len(l.src) {
			return l.eof()
		}
		if c := l.src[l.pos]; c != ':' {
			return l.fail(l.pos, "Unexpected character "+describeChar(c)+": was expecting a colon to separate field name and value")
		}
		l.pos++
		l.skipWS()
		if l.pos >= len(l.src) {
			return l.eof()
		}
		return l.value()
	case stArrStart, stArrAfter:
		if l.pos >= len(l.src) {
			return l.eof()
		}
		c := l.src[l.pos]
		if c == ']' {
			l.pos++
			return l.closeContainer(tEndArr)
		}
		if l.state == stArrAfter {
			if c != ',' {
				return l.fail(l.pos, "Unexpected character "+describeChar(c)+": was expecting comma to separate Array entries")
			}
			l.pos++
			l.skipWS()
			if l.pos >= len(l.src) {
				return l.eof()
			}
		}
		return l.value()
	}
	return tEOF
}

func (l *lexer) closeContainer(k tokKind) tokKind {
	l.stack = l.stack[:len(l.stack)-1]
	l.afterValue()
	l.kind = k
	l.end = l.pos
	return k
}

// afterValue moves to the state that follows a complete value.
func (l *lexer) afterValue() {
	switch {
	case len(l.stack) == 0:
		l.state = stRootDone
	case l.stack[len(l.stack)-1] == '{':
		l.state = stObjAfter
	default:
		l.state = stArrAfter
	}
}

func (l *lexer) value() tokKind {
	c := l.src[l.pos]
	switch {
	case c == '{':
		l.pos++
		l.stack = append(l.stack, '{')
		l.state = stObjStart
		l.kind, l.end = tBeginObj, l.pos
		return tBeginObj
	case c == '[':
		l.pos++
		l.stack = append(l.stack, '[')
		l.state = stArrStart
		l.kind, l.end = tBeginArr, l.pos
		return tBeginArr
	case c == '"':
		s, ok := l.str()
		if !ok {
			return tEOF
		}
		l.text = s
		l.afterValue()
		l.kind, l.end = tString, l.pos
		return tString
	case c == '-' || (c >= '0' && c <= '9'):
		start := l.pos
		for l.pos < len(l.src) && isNumByte(l.src[l.pos]) {
			l.pos++
		}
		lit := l.src[start:l.pos]
		if !validJSONNumber(lit) {
			return l.fail(l.pos, "Invalid numeric value: "+lit)
		}
		l.text = lit
		l.afterValue()
		l.kind, l.end = tNumber, l.pos
		return tNumber
	}
	// A bare word: true, false, null or an unrecognized token.
	start := l.pos
	for l.pos < len(l.src) && !isDelim(l.src[l.pos]) {
		l.pos++
	}
	word := l.src[start:l.pos]
	switch word {
	case "true":
		l.kind = tTrue
	case "false":
		l.kind = tFalse
	case "null":
		l.kind = tNull
	default:
		if word == "" {
			l.pos = start
			return l.fail(l.pos, "Unexpected character "+describeChar(c)+": expected a valid value "+expectValue)
		}
		return l.fail(l.pos, "Unrecognized token '"+word+"': was expecting "+expectValue)
	}
	l.afterValue()
	l.end = l.pos
	return l.kind
}

func isNumByte(c byte) bool {
	return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

func isDelim(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\r', ',', ':', '[', ']', '{', '}', '"':
		return true
	}
	return false
}

// str reads a JSON string starting at the opening quote and decodes it.
func (l *lexer) str() (string, bool) {
	l.pos++ // opening quote
	start := l.pos
	var buf []byte
	for {
		if l.pos >= len(l.src) {
			l.fail(l.pos, "Unexpected end-of-input: was expecting closing quote for a string value")
			return "", false
		}
		c := l.src[l.pos]
		switch {
		case c == '"':
			var s string
			if buf == nil {
				s = l.src[start:l.pos]
			} else {
				s = string(buf)
			}
			l.pos++
			if !utf8.ValidString(s) {
				l.fail(l.pos, "Invalid UTF-8 in string value")
				return "", false
			}
			return s, true
		case c == '\\':
			if buf == nil {
				buf = append([]byte(nil), l.src[start:l.pos]...)
			}
			var ok bool
			buf, l.pos, ok = unescapeOne(buf, l.src, l.pos)
			if !ok {
				if l.pos+1 < len(l.src) {
					e := l.src[l.pos+1]
					l.fail(l.pos+2, "Unrecognized character escape "+describeChar(e)[1:len(describeChar(e))-1])
				} else {
					l.fail(l.pos, "Unexpected end-of-input in character escape sequence")
				}
				return "", false
			}
		case c < 0x20:
			l.fail(l.pos+1, "Illegal unquoted character ((CTRL-CHAR, code "+strconv.Itoa(int(c))+")): has to be escaped using backslash to be included in string value")
			return "", false
		default:
			if buf != nil {
				buf = append(buf, c)
			}
			l.pos++
		}
	}
}

// unescapeOne decodes the escape sequence at src[i] (a backslash) and
// appends it to buf. It returns the offset after the sequence.
func unescapeOne[T string | []byte](buf []byte, src T, i int) ([]byte, int, bool) {
	if i+1 >= len(src) {
		return buf, i, false
	}
	switch src[i+1] {
	case '"':
		return append(buf, '"'), i + 2, true
	case '\\':
		return append(buf, '\\'), i + 2, true
	case '/':
		return append(buf, '/'), i + 2, true
	case 'b':
		return append(buf, '\b'), i + 2, true
	case 'f':
		return append(buf, '\f'), i + 2, true
	case 'n':
		return append(buf, '\n'), i + 2, true
	case 'r':
		return append(buf, '\r'), i + 2, true
	case 't':
		return append(buf, '\t'), i + 2, true
	case 'u':
		r, ok := hex4(src, i+2)
		if !ok {
			return buf, i, false
		}
		j := i + 6
		if r >= 0xD800 && r < 0xDC00 {
			// High surrogate: combine with a following low surrogate.
			if j+1 < len(src) && src[j] == '\\' && src[j+1] == 'u' {
				if r2, ok2 := hex4(src, j+2); ok2 && r2 >= 0xDC00 && r2 < 0xE000 {
					r = 0x10000 + (r-0xD800)<<10 + (r2 - 0xDC00)
					j += 6
				}
			}
		}
		return utf8.AppendRune(buf, r), j, true
	}
	return buf, i, false
}

func hex4[T string | []byte](src T, i int) (rune, bool) {
	if i+4 > len(src) {
		return 0, false
	}
	var r rune
	for k := 0; k < 4; k++ {
		c := src[i+k]
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// validJSONNumber checks the JSON number grammar (no leading zeros, no '+').
func validJSONNumber[T string | []byte](s T) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	if i >= len(s) {
		return false
	}
	if s[i] == '0' {
		i++
	} else if s[i] >= '1' && s[i] <= '9' {
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	} else {
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if i >= len(s) || s[i] < '0' || s[i] > '9' {
			return false
		}
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i >= len(s) || s[i] < '0' || s[i] > '9' {
			return false
		}
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	}
	return i == len(s)
}
