package templates

import (
	"fmt"
	"strings"
)

// ParseParameterOverrides reads SAM's --parameter-overrides: space-separated
// Key=Value pairs or ParameterKey=Key,ParameterValue=Value, a value quoted
// with "..." when it holds spaces (\" and \\ inside). It adds to into.
func ParseParameterOverrides(s string, into map[string]string) error {
	i := 0
	for {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n') {
			i++
		}
		if i >= len(s) {
			return nil
		}
		key, val, next, err := override(s, i)
		if err != nil {
			return err
		}
		if key == "" {
			return fmt.Errorf("--parameter-overrides: %q has no parameter name", s[i:next])
		}
		into[key] = val
		i = next
	}
}

// override reads one pair at s[i:] and returns the index after it.
func override(s string, i int) (key, val string, next int, err error) {
	if strings.HasPrefix(s[i:], "ParameterKey=") {
		rest := s[i+len("ParameterKey="):]
		k, _, ok := strings.Cut(rest, ",")
		if !ok || !strings.HasPrefix(rest[len(k)+1:], "ParameterValue=") {
			return "", "", 0, fmt.Errorf("--parameter-overrides: %q: write ParameterKey=KEY,ParameterValue=VALUE", firstWord(s[i:]))
		}
		j := i + len("ParameterKey=") + len(k) + 1 + len("ParameterValue=")
		v, n, err := value(s, j)
		return unquote(k), v, n, err
	}
	eq := strings.IndexAny(s[i:], "= ")
	if eq < 0 || s[i+eq] != '=' {
		return "", "", 0, fmt.Errorf("--parameter-overrides: %q: write KEY=VALUE", firstWord(s[i:]))
	}
	v, n, err := value(s, i+eq+1)
	return unquote(s[i : i+eq]), v, n, err
}

// value reads a value at s[j:]: "quoted", or up to the next space.
func value(s string, j int) (string, int, error) {
	if j < len(s) && s[j] == '"' {
		var b strings.Builder
		for k := j + 1; k < len(s); k++ {
			switch s[k] {
			case '\\':
				if k+1 < len(s) {
					k++
					b.WriteByte(s[k])
				}
			case '"':
				return b.String(), k + 1, nil
			default:
				b.WriteByte(s[k])
			}
		}
		return "", 0, fmt.Errorf("--parameter-overrides: a quoted value is not closed: %s", s[j:])
	}
	k := j
	for k < len(s) && s[k] != ' ' && s[k] != '\t' && s[k] != '\n' {
		k++
	}
	return s[j:k], k, nil
}

func unquote(k string) string { return strings.Trim(k, `"`) }

func firstWord(s string) string {
	if i := strings.IndexAny(s, " \t\n"); i >= 0 {
		return s[:i]
	}
	return s
}
