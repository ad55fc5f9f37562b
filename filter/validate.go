package filter

// validJSON reports whether b is exactly one valid JSON value (with
// optional surrounding whitespace). It is iterative, so deep nesting costs
// only its stack of container kinds, kept in s.valid between calls.
func (s *state) validJSON(b []byte) bool {
	stack := s.valid[:0]
	defer func() { s.valid = stack[:0] }()
	i := skipWS(b, 0)
	// expect: 0 value, 1 value or close (array start), 2 name or close
	// (object start), 3 after value
	expect := 0
	for {
		if i >= len(b) {
			return expect == 3 && len(stack) == 0
		}
		c := b[i]
		if expect == 3 {
			if len(stack) == 0 {
				return skipWS(b, i) == len(b)
			}
			top := stack[len(stack)-1]
			switch {
			case c == ',' && top == '[':
				expect = 0
				i = skipWS(b, i+1)
				continue
			case c == ',' && top == '{':
				i = skipWS(b, i+1)
				if i >= len(b) || b[i] != '"' {
					return false
				}
				if i = validString(b, i); i < 0 {
					return false
				}
				if i = skipWS(b, i); i >= len(b) || b[i] != ':' {
					return false
				}
				i = skipWS(b, i+1)
				expect = 0
				continue
			case c == ']' && top == '[', c == '}' && top == '{':
				stack = stack[:len(stack)-1]
				i = skipWS(b, i+1)
				if len(stack) == 0 {
					return i == len(b)
				}
				continue
			}
			return false
		}
		if expect == 1 && c == ']' || expect == 2 && c == '}' {
			stack = stack[:len(stack)-1]
			i = skipWS(b, i+1)
			expect = 3
			if len(stack) == 0 {
				return i == len(b)
			}
			continue
		}
		if expect == 2 {
			if c != '"' {
				return false
			}
			if i = validString(b, i); i < 0 {
				return false
			}
			if i = skipWS(b, i); i >= len(b) || b[i] != ':' {
				return false
			}
			i = skipWS(b, i+1)
			expect = 0
			continue
		}
		switch {
		case c == '{':
			stack = append(stack, '{')
			expect = 2
			i = skipWS(b, i+1)
			continue
		case c == '[':
			stack = append(stack, '[')
			expect = 1
			i = skipWS(b, i+1)
			continue
		case c == '"':
			if i = validString(b, i); i < 0 {
				return false
			}
		case c == '-' || (c >= '0' && c <= '9'):
			j := i
			for j < len(b) && isNumByte(b[j]) {
				j++
			}
			if !validJSONNumber(b[i:j]) {
				return false
			}
			i = j
		case c == 't' && len(b)-i >= 4 && string(b[i:i+4]) == "true":
			i += 4
		case c == 'f' && len(b)-i >= 5 && string(b[i:i+5]) == "false":
			i += 5
		case c == 'n' && len(b)-i >= 4 && string(b[i:i+4]) == "null":
			i += 4
		default:
			return false
		}
		i = skipWS(b, i)
		expect = 3
	}
}

// validString checks the JSON string at b[i] (a quote) and returns the
// offset after it, or -1.
func validString(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		c := b[j]
		switch {
		case c == '"':
			return j + 1
		case c < 0x20:
			return -1
		case c == '\\':
			if j+1 >= len(b) {
				return -1
			}
			switch b[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j++
			case 'u':
				if _, ok := hex4(b, j+2); !ok {
					return -1
				}
				j += 5
			default:
				return -1
			}
		}
	}
	return -1
}
