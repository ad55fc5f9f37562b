package payload

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"testing"
)

func TestMD5OfMessageAttributes(t *testing.T) {
	tests := []struct {
		name  string
		attrs []SQSMessageAttribute
		want  string
	}{
		{
			// AWS's value in the test_message_body_and_attributes_passed_correctly recording.
			name: "recorded",
			attrs: []SQSMessageAttribute{
				{Name: "Title", DataType: "String", StringValue: "The Whistler"},
				{Name: "Author", DataType: "String", StringValue: "John Grisham"},
				{Name: "WeeksOn", DataType: "Number", StringValue: "6"},
			},
			want: "d25a6aea97eb8f585bfa92d314504a92",
		},
		{name: "none", want: ""},
	}
	for _, tc := range tests {
		if got := MD5OfMessageAttributes(tc.attrs); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestSQSOrder(t *testing.T) {
	m := SQSMessage{
		MessageID: "id", Body: "Test message.",
		MessageAttributes: []SQSMessageAttribute{
			{Name: "Title", DataType: "String", StringValue: "The Whistler"},
			{Name: "Author", DataType: "String", StringValue: "John Grisham"},
			{Name: "WeeksOn", DataType: "Number", StringValue: "6"},
		},
		Attributes: SQSAttributes{ApproximateReceiveCount: "1", SentTimestamp: "2", SenderID: "3", ApproximateFirstReceiveTimestamp: "4",
			SequenceNumber: "5", MessageGroupID: "6", MessageDeduplicationID: "7"},
	}
	got := AppendSQS(nil, &m)
	// Recorded order of the message attributes (HashMap order).
	for _, want := range []string{
		`"attributes":{"ApproximateReceiveCount":"1","SentTimestamp":"2","SequenceNumber":"5","MessageGroupId":"6","SenderId":"3","MessageDeduplicationId":"7","ApproximateFirstReceiveTimestamp":"4"}`,
		`"messageAttributes":{"WeeksOn":{`,
		`},"Author":{"stringValue":"John Grisham","stringListValues":[],"binaryListValues":[],"dataType":"String"},"Title":{`,
		`"md5OfMessageAttributes":"d25a6aea97eb8f585bfa92d314504a92","md5OfBody":"e4e68fb7bd0e697a0ae8f1bb342846b3"`,
	} {
		if !bytes.Contains(got, []byte(want)) {
			t.Errorf("missing %s in\n%s", want, got)
		}
	}
	// No attributes: empty map, no md5OfMessageAttributes (as recorded).
	m.MessageAttributes = nil
	got = AppendSQS(nil, &m)
	if !bytes.Contains(got, []byte(`"messageAttributes":{},"md5OfBody":`)) {
		t.Errorf("got %s", got)
	}
}

func TestHashMapResize(t *testing.T) {
	if hashMapTableSize(12) != 16 || hashMapTableSize(13) != 32 || hashMapTableSize(25) != 64 {
		t.Fatal("HashMap table sizes")
	}
	if got := javaStringHash("hello"); got != 99162322 {
		t.Fatalf("hash(hello) = %d", got)
	}
	// Outside the BMP: Java hashes UTF-16 surrogates.
	if got := int32(javaStringHash("\U0001F600")); got != 1772899 {
		t.Fatalf("hash(emoji) = %d", got)
	}
}

func TestAppendString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", `"plain"`},
		{"q\"b\\s/", `"q\"b\\s/"`},
		{"\n\r\t\b\f\x00\x1f", `"\n\r\t\b\f\u0000\u001F"`},
		{"<>&\u2028é😀", "\"<>&\u2028é😀\""},
		{"bad\xffutf8", "\"bad\ufffdutf8\""},
	}
	for _, tc := range tests {
		got := AppendString(nil, tc.in)
		if string(got) != tc.want {
			t.Errorf("AppendString(%q) = %s, want %s", tc.in, got, tc.want)
		}
		if n := StringSize(tc.in); n != len(got) {
			t.Errorf("StringSize(%q) = %d, want %d", tc.in, n, len(got))
		}
		if got := AppendString(nil, []byte(tc.in)); string(got) != tc.want {
			t.Errorf("AppendString([]byte %q) = %s", tc.in, got)
		}
	}
	sum := md5.Sum([]byte("x"))
	_ = hex.EncodeToString(sum[:])
}

// swarSpecial must flag every word that contains a byte needing attention
// (false positives are allowed: they fall back to the byte loop).
func TestSWARSpecial(t *testing.T) {
	for pos := 0; pos < 8; pos++ {
		for b := 0; b < 256; b++ {
			for _, fill := range []byte{'a', ' ', '~', 0x7f} {
				var w [8]byte
				for i := range w {
					w[i] = fill
				}
				w[pos] = byte(b)
				special := !safe[byte(b)]
				if got := swarSpecial(load8(w[:], 0)); special && !got {
					t.Fatalf("byte %#x at %d (fill %q) not flagged", b, pos, fill)
				}
				if got := swarSpecial(load8(w[:], 0)); !special && got {
					t.Fatalf("byte %#x at %d (fill %q) flagged", b, pos, fill)
				}
			}
		}
	}
}
