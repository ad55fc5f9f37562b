package filter

import (
	"strings"
	"testing"
	"time"
)

func TestHostileInputs(t *testing.T) {
	m, err := Compile(fuzzPatterns, WithDialect(EventBridge), WithMaxFilters(0))
	if err != nil {
		t.Fatal(err)
	}
	deep := strings.Repeat(`{"a":`, 200_000) + "1" + strings.Repeat("}", 200_000)
	deepArr := `{"a":` + strings.Repeat("[", 200_000) + strings.Repeat("]", 200_000) + `}`
	deepSkipped := `{"zz":` + strings.Repeat("[", 500_000) + strings.Repeat("]", 500_000) + `}`
	bigArr := `{"d":[` + strings.Repeat(`{"a":1},`, 200_000) + `{"b":"y"}]}`
	bigNum := `{"n":` + strings.Repeat("9", 1_000_000) + `}`
	backslashes := `{"s":"` + strings.Repeat(`\\`, 500_000) + `"}`
	badUTF8 := "{\"s\":\"\xff\xfe\xfd\",\"a\":\"x\",\"b\":\"p\xc3\"}"
	for name, ev := range map[string]string{
		"deep objects": deep, "deep arrays": deepArr, "deep skipped": deepSkipped, "big object array": bigArr,
		"giant number": bigNum, "backslashes": backslashes, "invalid utf8": badUTF8,
	} {
		start := time.Now()
		_, err := m.Match(SourceNone, []byte(ev))
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: took %v", name, d)
		}
		if name == "deep skipped" || name == "big object array" || name == "giant number" || name == "backslashes" || name == "invalid utf8" {
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	}
	// Hostile SQS bodies: deep JSON in the string is matched or rejected fast.
	sqs, err := Compile([]string{`{"body":{"a":["1"]}}`})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	sqs.Match(SourceSQS, []byte(sqsRecord(strings.Repeat("[", 100_000)+strings.Repeat("]", 100_000))))
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("deep body took %v", d)
	}
	// A pattern of maximal length with many $or alternatives compiles fast
	// or is rejected as too complex.
	var b strings.Builder
	b.WriteString(`{`)
	for i := 0; b.Len() < MaxPatternLength-200; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`"$or":[{"a":["1"]},{"b":["2"]}]`)
	}
	b.WriteString(`}`)
	start = time.Now()
	_, err = Compile([]string{b.String()})
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("$or explosion took %v", d)
	}
	if err == nil {
		t.Error("exponential $or accepted")
	}
}
