package filter

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func readShared(t *testing.T, elem ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(sharedPath(t, elem...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustMatch(t *testing.T, d Dialect, patterns []string, src Source, event []byte) bool {
	t.Helper()
	m, err := Compile(patterns, WithDialect(d), WithMaxFilters(0))
	if err != nil {
		t.Fatalf("compile %v: %v", patterns, err)
	}
	ok, err := m.Match(src, event)
	if err != nil {
		t.Fatalf("match: %v", err)
	}
	return ok
}

// The upstream file has no expected results (it is a differential test);
// these follow from the case names: "split" and "mismatch" cases must not
// match because the fields come from different array elements.
var correctnessWant = map[string]bool{
	"flat: 2-field exists, both present":  true,
	"flat: 2-field exists, one missing":   false,
	"flat: exact match":                   true,
	"flat: exact mismatch":                false,
	"flat: prefix":                        true,
	"flat: numeric range":                 true,
	"flat: anything-but":                  true,
	"objarray: same element":              true,
	"objarray: split":                     false,
	"objarray: 3 elem, last valid":        true,
	"objarray: 3-field, all in one":       true,
	"objarray: 3-field, split 3 ways":     false,
	"objarray: exact same elem":           true,
	"objarray: exact split":               false,
	"objarray: prefix same":               true,
	"objarray: prefix split":              false,
	"primarray: exists":                   true,
	"primarray: exact match":              true,
	"primarray: no match":                 false,
	"nested: inner same":                  true,
	"nested: inner split":                 false,
	"nested: outer split":                 false,
	"nested: outer same":                  true,
	"nested2: same leaf":                  true,
	"nested2: split leaf":                 false,
	"mixed: array+scalar match":           true,
	"mixed: array+scalar fail":            false,
	"exists-false: absent":                true,
	"exists-false: present":               false,
	"empty object":                        false,
	"empty array":                         false,
	"single-field rule":                   true,
	"many elem one valid":                 true,
	"numeric+exists array":                true,
	"anything-but array":                  true,
	"primarray: large + scalar, exists":   true,
	"primarray: large + scalar, prefix":   true,
	"primarray: large + scalar, no match": false,
	"primarray: nested under object":      true,
	"primarray: two prim arrays + scalar": true,
	"primarray: exact match among many":   true,
	"primarray: numeric in array":         true,
	"primarray: anything-but in array":    true,
	"primarray: single value array":       true,
	"primarray: empty prim array":         false,
	"mixed: obj-array + prim-array":       true,
	"mixed: obj-array split + prim-array": false,
	"deep prim: nested 3 levels":          true,
	"suffix match in array":               true,
	"suffix match split":                  false,
	"N emails, only last element has name — dedup loses the only valid match": true,
}

func TestEventRulerCorrectnessCases(t *testing.T) {
	var cases []struct {
		Name  string
		Rule  json.RawMessage
		Event json.RawMessage
	}
	if err := json.Unmarshal(readShared(t, "filter-bench", "event-ruler", "correctness-cases.json"), &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) != len(correctnessWant) {
		t.Errorf("%d cases in file, %d expectations", len(cases), len(correctnessWant))
	}
	for _, c := range cases {
		want, ok := correctnessWant[c.Name]
		if !ok {
			t.Errorf("no expectation for %q", c.Name)
			continue
		}
		if got := mustMatch(t, Lambda, []string{string(c.Rule)}, SourceNone, c.Event); got != want {
			t.Errorf("%s: got %v, want %v\nrule %s\nevent %s", c.Name, got, want, c.Rule, c.Event)
		}
	}
}

func TestEventRulerArrayFiles(t *testing.T) {
	rules := make([]string, 5)
	events := make([][]byte, 5)
	for i := 1; i <= 4; i++ {
		rules[i] = string(readShared(t, "filter-bench", "event-ruler", fmt.Sprintf("arrayRule%d.json", i)))
		events[i] = readShared(t, "filter-bench", "event-ruler", fmt.Sprintf("arrayEvent%d.json", i))
	}
	// GenericMachineTest.nestedArraysTest, for rules 1-3; rule 4 worked
	// out by hand (event 3's first element has both values).
	// event -> matching rules
	want := map[int][]int{1: {1, 2}, 2: nil, 3: {4}, 4: {3, 4}}
	for e := 1; e <= 4; e++ {
		var got []int
		for r := 1; r <= 4; r++ {
			if mustMatch(t, Lambda, []string{rules[r]}, SourceNone, events[e]) {
				got = append(got, r)
			}
		}
		if exp := want[e]; fmt.Sprint(got) != fmt.Sprint(exp) {
			t.Errorf("event %d: rules %v match, want %v", e, got, exp)
		}
	}
}

func TestEventRulerBigEvent(t *testing.T) {
	rule := readShared(t, "filter-bench", "event-ruler", "bigEventRule.json")
	ev := readShared(t, "filter-bench", "event-ruler", "bigEvent.json")
	m, err := Compile([]string{string(rule)})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ok, err := m.Match(SourceNone, ev)
	if err != nil || !ok {
		t.Fatalf("Match = %v, %v; want true", ok, err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("big event took %v", d)
	}
}

func TestEventRulerOrFiles(t *testing.T) {
	load := func(name string) []json.RawMessage {
		var rs []json.RawMessage
		if err := json.Unmarshal(readShared(t, "filter-bench", "event-ruler", name), &rs); err != nil {
			t.Fatal(err)
		}
		return rs
	}
	for _, r := range load("orRelationshipRules.json") {
		if err := Validate(string(r)); err != nil {
			t.Errorf("valid $or rule rejected: %v\n%s", err, r)
		}
	}
	// "$or" where it cannot be the operator is an ordinary field name.
	for _, r := range load("normalRulesWithOrWording.json") {
		if err := Validate(string(r)); err != nil {
			t.Errorf("rule using $or as a field name rejected: %v\n%s", err, r)
		}
	}
	for _, r := range load("wrongOrRelationshipRules.json") {
		if err := Validate(string(r)); err == nil {
			t.Errorf("malformed $or accepted:\n%s", r)
		}
	}
	// Semantics of the third $or rule (source AND (metricName OR
	// (metricType AND namespace) OR scope)).
	rule := string(load("orRelationshipRules.json")[2])
	for ev, want := range map[string]bool{
		`{"source":"aws.cloudwatch","metricName":"ReadLatency"}`:                     true,
		`{"source":"aws.cloudwatch","metricType":"MetricType","namespace":"AWS/ES"}`: true,
		`{"source":"aws.cloudwatch","metricType":"MetricType"}`:                      false,
		`{"source":"aws.cloudwatch","scope":"Service"}`:                              true,
		`{"source":"aws.s3","scope":"Service"}`:                                      false,
	} {
		if got := mustMatch(t, Lambda, []string{rule}, SourceNone, []byte(ev)); got != want {
			t.Errorf("%s: got %v want %v", ev, got, want)
		}
	}
	// A rule that only the legacy reading accepts: "$or" is a field.
	legacy := string(load("normalRulesWithOrWording.json")[0])
	if !mustMatch(t, Lambda, []string{legacy}, SourceNone, []byte(`{"$or":"10.0.0.7"}`)) {
		t.Errorf("legacy $or field rule did not match")
	}
}

// perfEvent builds the large-array events named by perf-scenarios.json
// (the upstream generators are Java; these follow their descriptions).
func perfEvent(gen string, n int) string {
	list := func(prefix string, n int) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = fmt.Sprintf("%q", fmt.Sprintf("%s%d", prefix, i))
		}
		return "[" + strings.Join(parts, ",") + "]"
	}
	objs := func(n int, f func(i int) string) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = f(i)
		}
		return "[" + strings.Join(parts, ",") + "]"
	}
	switch gen {
	case "primArrayPlusScalar":
		return `{"d":{"tags":` + list("t", n) + `,"type":"GROUP"}}`
	case "primArrayOnly":
		return `{"d":{"tags":` + list("t", n) + `}}`
	case "objArrayBothFields":
		return `{"d":` + objs(n, func(i int) string { return fmt.Sprintf(`{"a":%d,"b":%d}`, i, i) }) + `}`
	case "objArrayLastValid":
		return `{"d":` + objs(n, func(i int) string {
			if i == n-1 {
				return `{"a":1,"b":2}`
			}
			return fmt.Sprintf(`{"a":%d}`, i)
		}) + `}`
	case "objArrayAllPartial":
		return `{"d":` + objs(n, func(i int) string {
			if i%2 == 0 {
				return fmt.Sprintf(`{"a":%d}`, i)
			}
			return fmt.Sprintf(`{"b":%d}`, i)
		}) + `}`
	case "customerLike":
		return `{"detail":{"data":{"name":"n","type":"USER","domains":` +
			objs(n, func(i int) string { return fmt.Sprintf(`{"email":"u%d@x"}`, i) }) +
			`},"context":{"companyId":"c","userId":"u","email":"e"}}}`
	case "primInsideObjArray":
		return `{"detail":{"data":` + objs(3, func(int) string { return `{"name":` + list("n", n) + `,"type":"t"}` }) + `}}`
	case "noObjArrayLargePrim":
		return `{"detail":{"data":{"name":` + list("n", n) + `,"type":"t"}}}`
	case "nested2Level":
		return `{"a":` + objs(n, func(int) string {
			return `{"b":` + objs(10, func(j int) string { return fmt.Sprintf(`{"x":%d,"y":%d}`, j, j) }) + `}`
		}) + `}`
	case "deepNestedPrim":
		return `{"a":` + objs(3, func(int) string { return `{"b":{"tags":` + list("t", n) + `,"type":"t"}}` }) + `}`
	case "wideRulePrimArray":
		return `{"d":{"a":` + list("a", n) + `,"b":"x","c":"y"}}`
	case "twoPrimArrays":
		return `{"tags":` + list("t", n) + `,"cats":` + list("c", n) + `,"v":"1"}`
	case "controlScalar":
		return `{"a":1,"b":2}`
	}
	return ""
}

func TestEventRulerPerfScenarios(t *testing.T) {
	var scenarios []struct {
		Name            string
		Rule            json.RawMessage
		Generator       string
		Sizes           []int
		ExpectedMatches int
	}
	if err := json.Unmarshal(readShared(t, "filter-bench", "event-ruler", "perf-scenarios.json"), &scenarios); err != nil {
		t.Fatal(err)
	}
	for _, sc := range scenarios {
		m, err := Compile([]string{string(sc.Rule)})
		if err != nil {
			t.Fatalf("%s: %v", sc.Name, err)
		}
		for _, n := range sc.Sizes {
			ev := perfEvent(sc.Generator, n)
			if ev == "" {
				t.Fatalf("%s: unknown generator %s", sc.Name, sc.Generator)
			}
			start := time.Now()
			ok, err := m.Match(SourceNone, []byte(ev))
			if err != nil {
				t.Fatalf("%s/%d: %v", sc.Name, n, err)
			}
			if got := map[bool]int{true: 1}[ok]; got != sc.ExpectedMatches {
				t.Errorf("%s/%d: %d matches, want %d", sc.Name, n, got, sc.ExpectedMatches)
			}
			if d := time.Since(start); d > 200*time.Millisecond {
				t.Errorf("%s/%d: took %v", sc.Name, n, d)
			}
		}
	}
}

func TestQuaminaSamples(t *testing.T) {
	for i := 0; i < 3; i++ {
		ev := readShared(t, "filter-bench", "quamina", fmt.Sprintf("cl-sample-%d", i))
		if !mustMatch(t, Lambda, []string{`{"type":["Feature"],"geometry":{"type":[{"exists":true}]}}`}, SourceNone, ev) {
			t.Errorf("cl-sample-%d did not match", i)
		}
	}
	st := readShared(t, "filter-bench", "quamina", "status.json")
	var doc map[string]any
	if err := json.Unmarshal(st, &doc); err != nil {
		t.Fatal(err)
	}
	_ = filepath.Base
	// Every top-level string field matches itself exactly and by prefix.
	for k, v := range doc {
		s, ok := v.(string)
		if !ok {
			continue
		}
		key, _ := json.Marshal(k)
		val, _ := json.Marshal(s)
		p := fmt.Sprintf(`{%s:[%s]}`, key, val)
		if !mustMatch(t, Lambda, []string{p}, SourceNone, st) {
			t.Errorf("status.json: %s did not match", p)
		}
	}
}
