package filter

import (
	"bytes"
	"encoding/json"
	"math/big"
	"strings"
	"testing"
	"time"
)

var fuzzPatterns = []string{
	`{"a":["x"],"b":[{"prefix":"p"}]}`,
	`{"d":{"a":[{"exists":true}],"b":[{"exists":false},"y"]}}`,
	`{"$or":[{"n":[{"numeric":[">",0,"<=",10]}]},{"s":[{"suffix":".png"},{"equals-ignore-case":"ÄB"}]}]}`,
	`{"ip":[{"cidr":"10.0.0.0/8"},{"cidr":"2001:db8::/32"}],"w":[{"wildcard":"a*b*c"}]}`,
	`{"x":{"y":{"z":[{"anything-but":["q",""]}],"n":[null,true,false,1e3,0.5]}}}`,
	`{"arr":{"k":["color"],"v":[{"anything-but":{"prefix":"bl"}}]}}`,
}

func fuzzMatchers(t testing.TB) []*Matcher {
	var ms []*Matcher
	for _, p := range fuzzPatterns {
		m, err := Compile([]string{p}, WithDialect(EventBridge))
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		ms = append(ms, m)
	}
	m, err := Compile(fuzzPatterns, WithDialect(EventBridge), WithMaxFilters(0))
	if err != nil {
		t.Fatal(err)
	}
	return append(ms, m)
}

// FuzzCompile: the pattern compiler never panics, stays fast, accepts only
// valid JSON, and what it accepts can be matched.
func FuzzCompile(f *testing.F) {
	for _, p := range fuzzPatterns {
		f.Add(p)
	}
	for _, p := range []string{`null`, `{"a":[]}`, `{"$or":[{"a":[1]},{"b":[2]}]}`, `{"a":[{"numeric":["<",1]}]}`,
		`{"a":[{"anything-but":{"wildcard":["x*","*y"]}}]}`, `{"a.b":{"c":[{"prefix":{"equals-ignore-case":"Q"}}]}}`,
		`{"a":[{"cidr":"bad-/64filter"}]}`, `{"a":"x"}`, "{\"\xff\":[1]}"} {
		f.Add(p)
	}
	events := [][]byte{
		[]byte(`{"a":"x","b":"pq","d":[{"a":1},{"a":2,"b":"y"}],"n":5,"s":"AB.PNG","ip":"10.1.1.1","w":"aXbYc"}`),
		[]byte(`{"x":{"y":{"z":["q","r"],"n":1000.0}},"arr":[{"k":"color","v":"blue"},{"k":"c","v":"red"}]}`),
	}
	f.Fuzz(func(t *testing.T, pattern string) {
		start := time.Now()
		m, err := Compile([]string{pattern}, WithDialect(EventBridge))
		if d := time.Since(start); d > time.Second {
			t.Fatalf("compile took %v", d)
		}
		if err != nil {
			if _, ok := err.(*PatternError); !ok {
				t.Fatalf("error is %T, not *PatternError: %v", err, err)
			}
			return
		}
		if !json.Valid([]byte(pattern)) {
			t.Fatalf("accepted invalid JSON %q", pattern)
		}
		for _, ev := range events {
			if _, err := m.Match(SourceNone, ev); err != nil {
				t.Fatalf("match: %v", err)
			}
		}
	})
}

// FuzzMatch: the event scanner never panics, accepts every valid JSON
// object, and its answer does not depend on formatting.
func FuzzMatch(f *testing.F) {
	for _, s := range []string{
		`{"a":"x","b":"pq"}`, `{"d":[{"a":1,"b":"y"}]}`, `{"n":[1,[2,[3]]],"s":"a\u0042\"c"}`,
		`{"x":{"y":{"z":"q","n":null}}}`, `{"arr":[{"k":"color","v":"blue"}]}`, `{"ip":"2001:db8::1","w":"abc"}`,
		`{"a":1e400,"b":-0.0000005,"c":12345678901234567890}`, "{\"a\":\"\xff\xfe\"}", `{"a":[[[[[[[[[[]]]]]]]]]]}`,
		`[1]`, `{"a":`, `{"a":"x"} {}`,
	} {
		f.Add([]byte(s))
	}
	ms := fuzzMatchers(f)
	f.Fuzz(func(t *testing.T, ev []byte) {
		valid := json.Valid(ev) && bytes.HasPrefix(bytes.TrimLeft(ev, " \t\r\n"), []byte("{"))
		var compact bytes.Buffer
		if valid {
			if err := json.Compact(&compact, ev); err != nil {
				t.Fatal(err)
			}
		}
		for _, m := range ms {
			start := time.Now()
			got, err := m.Match(SourceNone, ev)
			if d := time.Since(start); d > time.Second {
				t.Fatalf("match took %v", d)
			}
			if !valid {
				continue
			}
			if err != nil {
				if strings.Contains(err.Error(), "nested deeper") {
					continue
				}
				t.Fatalf("valid event rejected: %v", err)
			}
			got2, err := m.Match(SourceNone, compact.Bytes())
			if err != nil || got2 != got {
				t.Fatalf("reformatted event: %v, %v; original %v", got2, err, got)
			}
		}
	})
}

// FuzzSourceMatch: payload decoding for each source never panics and
// never rejects a well-formed record.
func FuzzSourceMatch(f *testing.F) {
	for _, s := range []string{`{"k":"v"}`, `hello`, `[1,2]`, `{"k":`, "\xff", `"str"`, `{"a":{"b":[1,{"c":null}]}}`} {
		f.Add([]byte(s))
	}
	m, err := Compile([]string{
		`{"body":{"k":["v"]}}`, `{"data":{"k":[{"exists":false}]},"partitionKey":["1"]}`,
		`{"value":[{"anything-but":"x"}]}`, `{"data":["hello"],"body":[{"prefix":"h"}]}`, `{"value":{"a":{"b":{"c":[null]}}}}`,
	}, WithMaxFilters(0))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		recs := map[Source]string{
			SourceSQS:     sqsRecord(string(payload)),
			SourceKinesis: kinesisRecord(b64(string(payload))),
			SourceKafka:   kafkaRecord(b64(string(payload))),
			SourceMQ:      rabbitRecord(b64(string(payload))),
		}
		for src, rec := range recs {
			if _, err := m.Match(src, []byte(rec)); err != nil && !strings.Contains(err.Error(), "nested deeper") {
				t.Fatalf("%s: %v", src, err)
			}
		}
	})
}

// FuzzValidJSON compares the payload validator with encoding/json.
func FuzzValidJSON(f *testing.F) {
	for _, s := range []string{`{}`, `[]`, `{"a":[1,2,{"b":null}]}`, `[1,]`, `{"a" 1}`, ` [ "x" ] `, `"s"`, `1e5`, `{"a":"\u12"}`} {
		f.Add([]byte(s))
	}
	s := &state{}
	f.Fuzz(func(t *testing.T, b []byte) {
		if bytes.Count(b, []byte("["))+bytes.Count(b, []byte("{")) > 9000 {
			return // encoding/json stops at depth 10000
		}
		if got, want := s.validJSON(b), json.Valid(b); got != want {
			t.Fatalf("validJSON(%q) = %v, encoding/json says %v", b, got, want)
		}
	})
}

// FuzzParseFixed compares number parsing with exact rational arithmetic.
func FuzzParseFixed(f *testing.F) {
	for _, s := range []string{"0", "-0.5e-6", "123.4567895", "-122.42916360922355", "5e9", "1E-7", "99999999999999999999", "0.0000015"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, st := parseFixed([]byte(s))
		if !validJSONNumber(s) || len(s) > 200 {
			return
		}
		if st == numSyntax {
			t.Fatalf("%q: valid number reported as syntax error", s)
		}
		r, ok := new(big.Rat).SetString(s)
		if !ok {
			return // exponent too large for big.Rat
		}
		r.Mul(r, big.NewRat(1_000_000, 1))
		// Math.round: floor(x + 1/2).
		r.Add(r, big.NewRat(1, 2))
		q := new(big.Int).Div(r.Num(), r.Denom()) // Euclidean: floor for positive denominators
		limit := big.NewInt(maxFixed)
		inRange := q.CmpAbs(limit) <= 0
		if st == numRange {
			// Range is judged before rounding; allow the boundary itself.
			if inRange && q.CmpAbs(limit) != 0 {
				t.Fatalf("%q: reported out of range, rounds to %v", s, q)
			}
			return
		}
		if !inRange || q.Int64() != got {
			t.Fatalf("%q: got %d, want %v", s, got, q)
		}
	})
}

// FuzzSkip compares the word-at-a-time container skipper with a plain one.
func FuzzSkip(f *testing.F) {
	for _, s := range []string{`[1,2,[3]]`, `{"a":"]}","b":[{}]}`, `[["\"]"],{"x":"\\"}]`, `[` + strings.Repeat("1234567,", 20) + `0]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 || (b[0] != '[' && b[0] != '{') {
			return
		}
		s := &state{}
		got := s.skip(b, 0)
		if s.err != nil {
			got = -1
		}
		if want := slowSkip(b); got != want {
			t.Fatalf("skip(%q) = %d, want %d", b, got, want)
		}
	})
}

func slowSkip(b []byte) int {
	depth := 0
	for j := 0; j < len(b); j++ {
		switch b[j] {
		case '"':
			k := skipString(b, j)
			if k < 0 {
				return -1
			}
			j = k - 1
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return j + 1
			}
		}
	}
	return -1
}
