package payload

import (
	"encoding/json"
	"testing"
	"unicode/utf8"
)

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", "q\"b\\", "\x00\x1f\n", "<>&\u2028", "bad\xff", "\xed\xa0\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := AppendString(nil, s)
		if len(got) != StringSize(s) {
			t.Fatalf("StringSize %d, len %d", StringSize(s), len(got))
		}
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("invalid JSON %q: %v", got, err)
		}
		if utf8.ValidString(s) && back != s {
			t.Fatalf("round trip %q -> %q", s, back)
		}
	})
}

func FuzzKafkaEvent(f *testing.F) {
	f.Add("topic", int32(0), []byte("key"), []byte("value"), "h", []byte{0x80, 0x7f})
	f.Fuzz(func(t *testing.T, topic string, part int32, key, value []byte, hk string, hv []byte) {
		r := KafkaRecord{Topic: topic, Partition: part, Key: key, Value: value, Headers: []KafkaHeader{{hk, hv}}}
		b := NewBuilder(SelfManagedKafka("b"))
		b.Add(KafkaGroup(topic, part), AppendKafka(nil, &r))
		out := b.Bytes()
		if len(out) != b.Size() || !json.Valid(out) {
			t.Fatalf("size %d/%d valid %v: %s", len(out), b.Size(), json.Valid(out), out)
		}
	})
}
