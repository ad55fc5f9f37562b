package filter

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// conformanceDirs are searched in order for the conformance data: an
// explicit directory ($ESMD_CONFORMANCE_DIR, laid out like
// testdata/conformance, which may hold more cases), then the copy in the
// repository (testdata/conformance, see its SOURCES.md).
func conformanceDirs() []string {
	var dirs []string
	if d := os.Getenv("ESMD_CONFORMANCE_DIR"); d != "" {
		dirs = append(dirs, d)
	}
	return append(dirs, "../testdata/conformance")
}

// sharedPath locates a conformance file or directory.
func sharedPath(t testing.TB, elem ...string) string {
	t.Helper()
	for _, d := range conformanceDirs() {
		p := filepath.Join(append([]string{d}, elem...)...)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatalf("conformance data %s not found in %v", filepath.Join(elem...), conformanceDirs())
	return ""
}

// json5ToJSON strips // and /* */ comments and trailing commas, which is
// all the JSON5 the conformance cases use.
func json5ToJSON(src []byte) []byte {
	var out []byte
	inStr := false
	for i := 0; i < len(src); i++ {
		c := src[i]
		if inStr {
			out = append(out, c)
			if c == '\\' && i+1 < len(src) {
				i++
				out = append(out, src[i])
			} else if c == '"' {
				inStr = false
			}
			continue
		}
		switch {
		case c == '"':
			inStr = true
			out = append(out, c)
		case c == '/' && i+1 < len(src) && src[i+1] == '/':
			for i < len(src) && src[i] != '\n' {
				i++
			}
			out = append(out, '\n')
		case c == '/' && i+1 < len(src) && src[i+1] == '*':
			end := strings.Index(string(src[i+2:]), "*/")
			if end < 0 {
				i = len(src)
			} else {
				i += end + 3
			}
		case c == ',':
			j := i + 1
			for j < len(src) && strings.IndexByte(" \t\r\n", src[j]) >= 0 {
				j++
			}
			if j < len(src) && (src[j] == '}' || src[j] == ']') {
				continue
			}
			out = append(out, c)
		default:
			out = append(out, c)
		}
	}
	return out
}

type snapshotEntry struct {
	RecordedContent map[string]json.RawMessage `json:"recorded-content"`
}

// recordedReasons maps a case name to the exact error message AWS returned.
func recordedReasons(t *testing.T, dir string) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "test_events_patterns.snapshot.json"))
	if err != nil {
		t.Fatal(err)
	}
	var snap map[string]snapshotEntry
	if err := json.Unmarshal(raw, &snap); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	re := regexp.MustCompile(`test_event_pattern\[(.+)\]$`)
	for k, v := range snap {
		m := re.FindStringSubmatch(k)
		if m == nil {
			continue
		}
		var rec struct {
			ExceptionMessage struct {
				Error struct{ Message string }
			} `json:"exception_message"`
		}
		if body, ok := v.RecordedContent[m[1]]; ok && json.Unmarshal(body, &rec) == nil && rec.ExceptionMessage.Error.Message != "" {
			out[m[1]] = rec.ExceptionMessage.Error.Message
		}
	}
	return out
}

// lambdaRejects finds the operators Lambda event filtering does not accept
// although EventBridge does: "wildcard" and the anything-but object forms.
// EventBridge's operator table (eb-create-pattern-operators) marks them
// "Pipe support: No", and Pipes and Lambda share one filtering model (spec
// section 8.2). Cases using them must match in the EventBridge dialect and
// be rejected in the Lambda dialect.
var lambdaRejects = regexp.MustCompile(`"anything-but"\s*:\s*\{|"wildcard"\s*:`)

type caseFile struct {
	Event        json.RawMessage
	EventPattern json.RawMessage
}

func TestConformancePatterns(t *testing.T) {
	dir := sharedPath(t, "filter-patterns")
	reasons := recordedReasons(t, dir)
	files, err := filepath.Glob(filepath.Join(dir, "*.json5"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json5")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var c caseFile
			if err := json.Unmarshal(json5ToJSON(raw), &c); err != nil {
				t.Fatalf("case file: %v", err)
			}
			pattern := string(c.EventPattern)
			usesLambdaRejected := lambdaRejects.MatchString(pattern)
			switch {
			case strings.HasSuffix(name, "_EXC"):
				for _, d := range []Dialect{EventBridge, Lambda} {
					_, err := Compile([]string{pattern}, WithDialect(d))
					pe, ok := err.(*PatternError)
					if !ok {
						t.Fatalf("dialect %d: want *PatternError, got %v", d, err)
					}
					if want, ok := reasons[name]; ok && d == EventBridge && pe.Message() != want {
						t.Errorf("reason:\n got %q\nwant %q", pe.Message(), want)
					}
				}
			default:
				want := !strings.HasSuffix(name, "_NEG")
				checkMatch(t, EventBridge, pattern, c.Event, want)
				if usesLambdaRejected {
					// Lambda rejects this operator at create/update time.
					if _, err := Compile([]string{pattern}); err == nil {
						t.Errorf("Lambda dialect accepted a pattern using wildcard or an anything-but object form")
					}
				} else {
					checkMatch(t, Lambda, pattern, c.Event, want)
				}
			}
		})
	}
}

func checkMatch(t *testing.T, d Dialect, pattern string, event []byte, want bool) {
	t.Helper()
	m, err := Compile([]string{pattern}, WithDialect(d))
	if err != nil {
		t.Fatalf("dialect %d: compile %s: %v", d, pattern, err)
	}
	got, err := m.Match(SourceNone, event)
	if err != nil {
		t.Fatalf("match: %v", err)
	}
	if got != want {
		t.Errorf("dialect %d: Match = %v, want %v\npattern %s\nevent %s", d, got, want, pattern, event)
	}
}

func TestConformanceMultiKey(t *testing.T) {
	dir := sharedPath(t, "filter-patterns")
	ev, err := os.ReadFile(filepath.Join(dir, "complex_multi_key_event.json"))
	if err != nil {
		t.Fatal(err)
	}
	pat, err := os.ReadFile(filepath.Join(dir, "complex_multi_key_event_pattern.json"))
	if err != nil {
		t.Fatal(err)
	}
	// The pattern repeats "location"; the last occurrence wins.
	checkMatch(t, Lambda, string(pat), ev, true)
}

// TestRecordedInvalidJSON checks the syntax-error messages recorded for
// TestEventPattern, including the parser location.
func TestRecordedInvalidJSON(t *testing.T) {
	cases := []struct{ pattern, want string }{
		{"this is valid json but not a dict", "Event pattern is not valid. Reason: Unrecognized token 'this': was expecting (JSON String, Number, Array, Object or token 'null', 'true' or 'false')\n at [Source: (String)\"this is valid json but not a dict\"; line: 1, column: 5]"},
		{"{'bad': 'quotation'}", "Event pattern is not valid. Reason: Unexpected character (''' (code 39)): was expecting double-quote to start field name\n at [Source: (String)\"{'bad': 'quotation'}\"; line: 1, column: 2]"},
		{`{"not": closed mark"`, "Event pattern is not valid. Reason: Unrecognized token 'closed': was expecting (JSON String, Number, Array, Object or token 'null', 'true' or 'false')\n at [Source: (String)\"{\"not\": closed mark\"\"; line: 1, column: 15]"},
		{`["not", "a", "dict", "but valid json"]`, "Event pattern is not valid. Reason: Filter is not an object\n at [Source: (String)\"[\"not\", \"a\", \"dict\", \"but valid json\"]\"; line: 1, column: 2]"},
	}
	for _, c := range cases {
		err := Validate(c.pattern)
		pe, ok := err.(*PatternError)
		if !ok {
			t.Fatalf("%s: want *PatternError, got %v", c.pattern, err)
		}
		if got := pe.Detail(); got != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.pattern, got, c.want)
		}
	}
}

func TestLargeComplexPayload(t *testing.T) {
	ev, err := os.ReadFile(sharedPath(t, "filter-patterns", "test_payloads", "large_complex_payload.json"))
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{
		`{"source":["soft1"],"detail":{"retryCount":[{"numeric":["=",0]}]}}`:                       true,
		`{"detail":{"sourceHostname":[{"suffix":".amazonaws.com"}],"metadata":[{"exists":true}]}}`: false,
		`{"detail":{"correlationUuid":[{"prefix":"a26f"}],"nope":[{"exists":false}]}}`:             true,
	} {
		if got := mustMatch(t, Lambda, []string{p}, SourceNone, ev); got != want {
			t.Errorf("%s: got %v, want %v", p, got, want)
		}
	}
}
