package filter

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// InvalidPatternMessage is the message Lambda's CreateEventSourceMapping and
// UpdateEventSourceMapping return (as InvalidParameterValueException) for
// any pattern it rejects; the detailed reason is not shown by the API.
const InvalidPatternMessage = "Invalid filter pattern definition."

// Sentinels wrapped by *PatternError for limit violations, so the API layer
// can tell a limit from a grammar error with errors.Is.
var (
	// ErrPatternTooLong: a pattern is longer than MaxPatternLength.
	ErrPatternTooLong = errors.New("filter pattern too long")
	// ErrTooManyFilters: more filters than the configured maximum.
	ErrTooManyFilters = errors.New("too many filters")
)

// PatternError reports a filter pattern that AWS would reject. Callers on
// the API path return InvalidPatternMessage; tools show Detail().
type PatternError struct {
	// Index is the position of the offending pattern in the list given to
	// Compile, or -1 when the error is about the list itself.
	Index int
	// Reason is the EventBridge wording, e.g. `"int" must be an object or an
	// array`; Error and Detail prefix it with "Event pattern is not valid.".
	Reason string
	// Line and Column locate syntax errors in the pattern (1-based, 0 when
	// unknown), in the same way the reference engine's JSON parser does.
	Line, Column int
	// Pattern is the pattern text, kept to render the location.
	Pattern string
	// Err is ErrPatternTooLong or ErrTooManyFilters for limit errors.
	Err error
}

func (e *PatternError) Error() string {
	if e.Index >= 0 {
		return fmt.Sprintf("filter %d: %s", e.Index, e.Message())
	}
	return e.Message()
}

// Message is the EventBridge-style message: "Event pattern is not valid.
// Reason: ...".
func (e *PatternError) Message() string {
	if e.Err != nil {
		return e.Reason
	}
	return "Event pattern is not valid. Reason: " + e.Reason
}

// Detail is Message plus, for syntax errors, the parser location in the
// reference engine's format.
func (e *PatternError) Detail() string {
	m := e.Message()
	if e.Line == 0 {
		return m
	}
	src := e.Pattern
	if utf8.RuneCountInString(src) > 500 {
		r := []rune(src)
		src = string(r[:500]) + "\"[truncated " + strconv.Itoa(len(r)-500) + " chars]"
	}
	var b strings.Builder
	b.WriteString(m)
	b.WriteString("\n at [Source: (String)\"")
	b.WriteString(src)
	b.WriteString("\"; line: ")
	b.WriteString(strconv.Itoa(e.Line))
	b.WriteString(", column: ")
	b.WriteString(strconv.Itoa(e.Column))
	b.WriteString("]")
	return b.String()
}

func (e *PatternError) Unwrap() error { return e.Err }
