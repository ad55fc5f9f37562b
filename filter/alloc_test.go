package filter

import (
	"sync"
	"testing"
)

func TestZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	cases := []struct {
		src     Source
		pattern string
		record  string
	}{
		{SourceNone, `{"properties":{"STREET":[{"prefix":"ZZ"}]},"geometry":{"firstCoordinates":{"x":[{"numeric":[">",0]}]}}}`,
			`{"type":"Feature","properties":{"MAPBLKLOT":"0001001","STREET":"UNKNOWN","ST_TYPE":null},"geometry":{"type":"Polygon","firstCoordinates":{"x":-122.422003528252475,"y":37.80848009696725,"z":0},"coordinates":[[[-122.422003528252475,37.808480096967251,0.0]]]}}`},
		{SourceNone, `{"d":{"a":["x"],"b":[{"exists":false}]}}`, `{"d":[{"a":"y"},{"a":"z","b":1},{"c":"\u00e9\n"}]}`},
		{SourceSQS, `{"body":{"RequestCode":["BBBB"]}}`, sqsRecord(`{"RecordNumber":1234,"RequestCode":"AA\"AA"}`)},
		{SourceKinesis, `{"data":{"event_type":["function_2"]}}`, kinesisRecord(b64(`{"event_type":"function_1"}`))},
		{SourceKafka, `{"value":{"s":[{"equals-ignore-case":"NOPE"}]}}`, kafkaRecord(b64(`{"s":"Straße"}`))},
		{SourceDynamoDB, `{"dynamodb":{"NewImage":{"k":{"S":[{"suffix":"x"}]}}}}`, ddbRecord},
	}
	for _, c := range cases {
		m, err := Compile([]string{c.pattern})
		if err != nil {
			t.Fatal(err)
		}
		rec := []byte(c.record)
		m.Match(c.src, rec) // warm the pool
		allocs := testing.AllocsPerRun(200, func() {
			if ok, err := m.Match(c.src, rec); ok || err != nil {
				t.Fatalf("%s: unexpected %v %v", c.pattern, ok, err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %.1f allocs per non-matching record", c.pattern, allocs)
		}
	}
}

func TestConcurrentMatch(t *testing.T) {
	m, err := Compile([]string{`{"d":{"a":["x"],"b":["y"]}}`, `{"n":[{"numeric":[">",5]}]}`})
	if err != nil {
		t.Fatal(err)
	}
	events := map[string]bool{
		`{"d":[{"a":"x","b":"y"}]}`:   true,
		`{"d":[{"a":"x"},{"b":"y"}]}`: false,
		`{"n":6}`:                     true,
		`{"n":5}`:                     false,
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				for ev, want := range events {
					if got, err := m.Match(SourceNone, []byte(ev)); err != nil || got != want {
						t.Errorf("%s: %v %v", ev, got, err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
}
