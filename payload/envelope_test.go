package payload

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

func TestBuilderSize(t *testing.T) {
	windowed := StreamRecords("arn:aws:kinesis:us-east-1:1:stream/s")
	windowed.Window = &Window{Start: time.Unix(60, 0), End: time.Unix(120, 0), State: json.RawMessage(`{"n":1}`), ShardID: "shardId-1"}
	emptyWindow := StreamRecords("")
	emptyWindow.Window = &Window{}
	envs := map[string]Envelope{
		"records":         Records(""),
		"records-window":  windowed,
		"records-window0": emptyWindow,
		"msk":             MSK("arn", "b:9092"),
		"selfmanaged":     SelfManagedKafka("b:9092"),
		"rabbitmq":        RabbitMQ("arn"),
		"activemq":        ActiveMQ("arn"),
		"documentdb":      DocumentDB("arn"),
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for name, env := range envs {
		t.Run(name, func(t *testing.T) {
			b := NewBuilder(env)
			for n := 0; n < 40; n++ {
				if got := len(b.Bytes()); got != b.Size() {
					t.Fatalf("n=%d: len(Bytes)=%d, Size=%d", n, got, b.Size())
				}
				if !json.Valid(b.Bytes()) {
					t.Fatalf("invalid JSON: %s", b.Bytes())
				}
				// Up to 12 groups so the map index is exercised; keys need escaping.
				group := fmt.Sprintf("t\"%d-%d", rng.IntN(12), 0)
				data := []byte(fmt.Sprintf(`{"i":%d,"pad":"%s"}`, n, make([]byte, 0, rng.IntN(5))))
				want := b.SizeWith(group, len(data))
				b.Add(group, data)
				if b.Size() != want {
					t.Fatalf("SizeWith predicted %d, Size after Add %d", want, b.Size())
				}
			}
			if !env.Grouped {
				// Overhead + sum + commas.
				var recs [][]byte
				total := 0
				for i := 0; i < 5; i++ {
					r := []byte(fmt.Sprintf(`{"i":%d}`, i))
					recs = append(recs, r)
					total += len(r)
				}
				if got, want := len(env.Append(nil, "", recs)), env.Overhead()+total+4; got != want {
					t.Fatalf("Append size %d, formula %d", got, want)
				}
			}
			b.Reset(env)
			if b.Len() != 0 || b.Size() != env.Overhead() {
				t.Fatal("Reset")
			}
		})
	}
}

func TestEpochSeconds(t *testing.T) {
	tests := []struct {
		in   time.Time
		want string
	}{
		{time.UnixMilli(1545084650987), "1545084650.987"},
		{time.UnixMilli(1545084650980), "1545084650.98"},
		{time.UnixMilli(1545084650900), "1545084650.9"},
		{time.UnixMilli(1545084650001), "1545084650.001"},
		{time.Unix(1480642020, 0), "1480642020"},
		{time.Unix(1480642020, 999999), "1480642020"}, // below a millisecond
	}
	for _, tc := range tests {
		if got := string(AppendEpochSeconds(nil, tc.in)); got != tc.want {
			t.Errorf("%v: got %s, want %s", tc.in, got, tc.want)
		}
	}
}
