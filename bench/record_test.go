package bench

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/esmd/esmd/payload"
)

func TestRecord(t *testing.T) {
	tests := []struct {
		id    uint64
		ts    int64
		match bool
		size  int
	}{
		{0, 1, true, 64},
		{42, time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC).UnixNano(), false, 1024},
		{1<<64 - 1, 1<<63 - 1, true, 100},
		{7, 5, true, 10}, // smaller than the fixed part: no padding
	}
	for _, tt := range tests {
		b := Record(nil, tt.id, tt.ts, tt.match, tt.size)
		if tt.size >= 100 && len(b) != tt.size {
			t.Errorf("id %d: %d bytes, want %d", tt.id, len(b), tt.size)
		}
		var v struct{ Bk, Kind, Pad string }
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("id %d: not JSON: %v: %s", tt.id, err, b)
		}
		if want := map[bool]string{true: "match", false: "skip"}[tt.match]; v.Kind != want {
			t.Errorf("id %d: kind %q, want %q", tt.id, v.Kind, want)
		}
		got := scanTokens(nil, b)
		if want := []token{{tt.id, tt.ts, tt.match}}; !slices.Equal(got, want) {
			t.Errorf("id %d: tokens %v, want %v", tt.id, got, want)
		}
	}
}

// TestScanTokens reads the tokens out of events as esmd's payload package
// writes them for each source: bodies as text (SQS, DynamoDB Streams,
// DocumentDB) and as base64 (Kafka, Kinesis, RabbitMQ, ActiveMQ).
func TestScanTokens(t *testing.T) {
	recs := [][]byte{Record(nil, 1, 100, true, 200), Record(nil, 2, 200, false, 200), Record(nil, 12345678901, 1764720000123456789, true, 1024)}
	want := []token{{1, 100, true}, {2, 200, false}, {12345678901, 1764720000123456789, true}}
	events := map[string]func(dst []byte, body []byte) []byte{
		"kafka": func(dst, body []byte) []byte {
			return payload.AppendKafka(dst, &payload.KafkaRecord{Topic: "t", Key: []byte("k"), Value: body})
		},
		"sqs": func(dst, body []byte) []byte {
			return payload.AppendSQS(dst, &payload.SQSMessage{MessageID: "m", Body: string(body)})
		},
		"kinesis": func(dst, body []byte) []byte {
			return payload.AppendKinesis(dst, &payload.KinesisRecord{ShardID: "s", PartitionKey: "pk", Data: body})
		},
		"dynamodb": func(dst, body []byte) []byte {
			var v struct{ Bk, Kind, Pad string }
			_ = json.Unmarshal(body, &v)
			img, _ := json.Marshal(map[string]any{"bk": map[string]string{"S": v.Bk}, "kind": map[string]string{"S": v.Kind}})
			return payload.AppendDynamoDB(dst, &payload.DynamoDBRecord{EventName: "INSERT", Keys: json.RawMessage(`{"id":{"S":"x"}}`), NewImage: img})
		},
		"rabbitmq": func(dst, body []byte) []byte {
			return payload.AppendRabbitMQ(dst, &payload.RabbitMQMessage{Data: body})
		},
		"activemq": func(dst, body []byte) []byte {
			return payload.AppendActiveMQ(dst, &payload.ActiveMQMessage{MessageID: "ID:1", Data: body})
		},
		"documentdb": func(dst, body []byte) []byte {
			return payload.AppendDocumentDB(dst, json.RawMessage(`{"operationType":"insert","fullDocument":`+string(body)+`}`))
		},
	}
	for name, add := range events {
		t.Run(name, func(t *testing.T) {
			ev := []byte(`{"Records":[`)
			for i, r := range recs {
				if i > 0 {
					ev = append(ev, ',')
				}
				ev = add(ev, r)
			}
			ev = append(ev, ']', '}')
			if got := scanTokens(nil, ev); !slices.Equal(got, want) {
				t.Errorf("tokens %v, want %v in %.300s", got, want, ev)
			}
		})
	}
}

// TestScanTokensDamaged: damaged or cut events give the whole tokens
// they hold and never panic.
func TestScanTokensDamaged(t *testing.T) {
	tests := []struct {
		name string
		ev   string
		want int
	}{
		{"empty", ``, 0},
		{"prefix only", `BENCH:`, 0},
		{"no time", `"BENCH:12"`, 0},
		{"bad kind", `"BENCH:12:34:x"`, 0},
		{"cut base64", `"eyJiayI6IkJFTkNI`, 0},
		{"bad base64", `"eyJiayI6IkJFTkNI!!!!"`, 0},
		{"text then garbage", `"BENCH:1:2:m" BENCH:: BENCH:a:b:m`, 1},
	}
	for _, tt := range tests {
		if got := scanTokens(nil, []byte(tt.ev)); len(got) != tt.want {
			t.Errorf("%s: %d tokens (%v), want %d", tt.name, len(got), got, tt.want)
		}
	}
}

func FuzzScanTokens(f *testing.F) {
	f.Add(Record(nil, 1, 2, true, 80))
	f.Add([]byte(`{"value":"eyJiayI6IkJFTkNIOjE6Mjpt"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, tk := range scanTokens(nil, b) {
			_ = tk
		}
	})
}
