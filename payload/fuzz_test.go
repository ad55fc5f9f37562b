package payload

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"
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
	f.Add("topic", int32(0), int64(0), int64(0), []byte("key"), []byte("value"), "h", []byte{0x80, 0x7f})
	f.Add("t\x00\xff", int32(-1), int64(-9223372036854775808), int64(-1), []byte(nil), []byte(nil), "", []byte(nil))
	f.Fuzz(func(t *testing.T, topic string, part int32, off, ms int64, key, value []byte, hk string, hv []byte) {
		r := KafkaRecord{Topic: topic, Partition: part, Offset: off, Timestamp: time.UnixMilli(ms), Key: key, Value: value,
			Headers: []KafkaHeader{{hk, hv}}}
		rec := AppendKafka(nil, &r)
		if n := KafkaSize(&r); n != len(rec) {
			t.Fatalf("KafkaSize %d, len %d: %s", n, len(rec), rec)
		}
		b := NewBuilder(SelfManagedKafka("b"))
		b.Add(KafkaGroup(topic, part), rec)
		out := b.Bytes()
		if len(out) != b.Size() || !json.Valid(out) {
			t.Fatalf("size %d/%d valid %v: %s", len(out), b.Size(), json.Valid(out), out)
		}
		lazy := NewBuilder(SelfManagedKafka("b"))
		lazy.AddEncoder(KafkaGroup(topic, part), KafkaSize(&r), kafkaEncoder{&r})
		if got := lazy.Bytes(); lazy.Size() != b.Size() || !bytes.Equal(got, out) {
			t.Fatalf("AddEncoder gives %d bytes (size %d): %s, Add %s", len(got), lazy.Size(), got, out)
		}
	})
}

// kafkaEncoder encodes a KafkaRecord on demand.
type kafkaEncoder struct{ r *KafkaRecord }

func (e kafkaEncoder) AppendEncoded(dst []byte) []byte { return AppendKafka(dst, e.r) }

func FuzzAppendBase64(f *testing.F) {
	for _, s := range []string{"", "a", "ab", "abc", "abcdefgh", "abcdefghi", "\x00\xff\x80\x7f\x01\xfe\x10\xef\x20"} {
		f.Add([]byte(s), 0)
	}
	f.Fuzz(func(t *testing.T, b []byte, prefix int) {
		dst := make([]byte, prefix&15, prefix&15+(prefix>>4&7)) // some room, or none
		got := AppendBase64(dst, b)
		want := append(append(append(make([]byte, prefix&15), '"'), base64.StdEncoding.EncodeToString(b)...), '"')
		if !bytes.Equal(got, want) {
			t.Fatalf("AppendBase64(%x) = %s, want %s", b, got, want)
		}
	})
}
