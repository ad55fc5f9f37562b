package payload

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/payload")

// conformanceDir holds the aws-lambda-go events fixtures (see testdata/conformance/SOURCES.md).
const conformanceDir = "../testdata/conformance/aws-lambda-go-events"

func b64(t testing.TB, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ms(v int64) time.Time { return time.UnixMilli(v) }

func u8(v uint8) *uint8  { return &v }
func i64(v int64) *int64 { return &v }

// goldenCase is one event encoded from Go input.
type goldenCase struct {
	name string
	// conformance is the aws-lambda-go-events fixture the event must equal
	// (as JSON values), if any.
	conformance string
	// oracle is a pointer to the aws-lambda-go events type for the round
	// trip, or nil.
	oracle func() any
	build  func(t testing.TB) []byte
}

func sqsConformanceMessage() SQSMessage {
	return SQSMessage{
		MessageID:     "MessageID_1",
		ReceiptHandle: "MessageReceiptHandle",
		Body:          "Message Body",
		Attributes: SQSAttributes{
			ApproximateReceiveCount:          "2",
			SentTimestamp:                    "1520621625029",
			SenderID:                         "AROAIWPX5BD2BHG722MW4:sender",
			ApproximateFirstReceiveTimestamp: "1520621634884",
		},
		MessageAttributes: []SQSMessageAttribute{
			{Name: "Attribute1", DataType: "String", StringValue: "AttributeValue1"},
			{Name: "Attribute2", DataType: "Number", StringValue: "123", BinaryListValues: [][]byte{[]byte("1"), []byte("0")}},
			{Name: "Attribute3", DataType: "Binary", BinaryValue: []byte("1100"), StringListValues: []string{"abc", "123"},
				BinaryListValues: [][]byte{[]byte("0"), []byte("1"), []byte("0")}},
		},
		MD5OfBody:              "fce0ea8dd236ccb3ed9b37dae260836f",
		MD5OfMessageAttributes: "582c92c5c5b6ac403040a4f3ab3115c9",
		EventSourceARN:         "arn:aws:sqs:us-west-2:123456789012:SQSQueue",
		AWSRegion:              "us-west-2",
	}
}

func kinesisConformanceRecords() []KinesisRecord {
	base := KinesisRecord{
		ShardID:           "shardId-000000000000",
		PartitionKey:      "s1",
		Data:              []byte("Hello World"),
		InvokeIdentityArn: "arn:aws:iam::123456789012:role/LambdaRole",
		AWSRegion:         "us-east-1",
		EventSourceARN:    "arn:aws:kinesis:us-east-1:123456789012:stream/simple-stream",
	}
	r1, r2 := base, base
	r1.SequenceNumber = "49568167373333333333333333333333333333333333333333333333"
	r1.ApproximateArrivalTimestamp = ms(1480641523477)
	r2.SequenceNumber = "49568167373333333334444444444444444444444444444444444444"
	r2.ApproximateArrivalTimestamp = ms(1480841523477)
	return []KinesisRecord{r1, r2}
}

// ddbConformanceRecords takes the typed images from the fixture itself:
// esmd passes them through verbatim.
func ddbConformanceRecords(t testing.TB) []DynamoDBRecord {
	raw, err := os.ReadFile(filepath.Join(conformanceDir, "dynamodb-event.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ev struct {
		Records []struct {
			UserIdentity json.RawMessage `json:"userIdentity"`
			DynamoDB     struct {
				Keys, NewImage json.RawMessage
			} `json:"dynamodb"`
		}
	}
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatal(err)
	}
	compact := func(r json.RawMessage) json.RawMessage {
		if r == nil {
			return nil
		}
		var b bytes.Buffer
		if err := json.Compact(&b, r); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	var out []DynamoDBRecord
	for i, id := range []string{"f07f8ca4b0b26cb9c4e5e77e69f274ee", "f07f8ca4b0b26cb9c4e5e77e42f274ee"} {
		out = append(out, DynamoDBRecord{
			EventID:                     id,
			EventName:                   "INSERT",
			AWSRegion:                   "us-east-1",
			UserIdentity:                compact(ev.Records[i].UserIdentity),
			ApproximateCreationDateTime: time.Unix(1480642020, 0),
			Keys:                        compact(ev.Records[i].DynamoDB.Keys),
			NewImage:                    compact(ev.Records[i].DynamoDB.NewImage),
			SequenceNumber:              "1405400000000002063282832",
			SizeBytes:                   54,
			StreamViewType:              "NEW_AND_OLD_IMAGES",
			EventSourceARN:              "arn:aws:dynamodb:us-east-1:123456789012:table/Example-Table/stream/2016-12-01T00:00:00.000",
		})
	}
	return out
}

func encodeAll[T any](recs []T, enc func([]byte, *T) []byte) [][]byte {
	var out [][]byte
	for i := range recs {
		out = append(out, enc(nil, &recs[i]))
	}
	return out
}

func goldenCases() []goldenCase {
	return []goldenCase{
		{
			name: "sqs", conformance: "sqs-event.json",
			oracle: func() any { return new(events.SQSEvent) },
			build: func(t testing.TB) []byte {
				m := sqsConformanceMessage()
				env := Records("")
				return env.Append(nil, "", [][]byte{AppendSQS(nil, &m)})
			},
		},
		{
			// The record of the test_message_body_and_attributes_passed_correctly
			// recording: md5OfMessageAttributes d25a6aea... is AWS's value.
			name:   "sqs-recorded",
			oracle: func() any { return new(events.SQSEvent) },
			build: func(t testing.TB) []byte {
				m := SQSMessage{
					MessageID: "2e1424d4-f796-459a-8184-9c92662be6da", ReceiptHandle: "AQEBzWwaftRI0KuVm4tP+/7q1rGgNqicHq...",
					Body: `{"destination": "https://sqs.us-east-1.amazonaws.com/111111111111/dest", "fail_attempts": 0}`,
					Attributes: SQSAttributes{ApproximateReceiveCount: "1", SentTimestamp: "1573251510774",
						SenderID: "AIDAIENQZJOLO23YVJ4VO", ApproximateFirstReceiveTimestamp: "1573251510774"},
					MessageAttributes: []SQSMessageAttribute{
						{Name: "Title", DataType: "String", StringValue: "The Whistler"},
						{Name: "Author", DataType: "String", StringValue: "John Grisham"},
						{Name: "WeeksOn", DataType: "Number", StringValue: "6"},
					},
					EventSourceARN: "arn:aws:sqs:us-east-1:111111111111:queue", AWSRegion: "us-east-1",
				}
				env := Records("")
				return env.Append(nil, "", [][]byte{AppendSQS(nil, &m)})
			},
		},
		{
			// AWS's FIFO example (with-sqs.html): attribute order as AWS shows it.
			name:   "sqs-fifo",
			oracle: func() any { return new(events.SQSEvent) },
			build: func(t testing.TB) []byte {
				m := SQSMessage{
					MessageID: "11d6ee51-4cc7-4302-9e22-7cd8afdaadf5", ReceiptHandle: "AQEBBX8nesZEXmkhsmZeyIE8iQAMig7qw...",
					Body: "Test message.",
					Attributes: SQSAttributes{ApproximateReceiveCount: "1", SentTimestamp: "1573251510774",
						SequenceNumber: "18849496460467696128", MessageGroupID: "1", SenderID: "AIDAIO23YVJENQZJOL4VO",
						MessageDeduplicationID: "1", ApproximateFirstReceiveTimestamp: "1573251510774"},
					EventSourceARN: "arn:aws:sqs:us-east-2:123456789012:fifo.fifo", AWSRegion: "us-east-2",
				}
				env := Records("")
				return env.Append(nil, "", [][]byte{AppendSQS(nil, &m)})
			},
		},
		{
			name: "kinesis", conformance: "kinesis-event.json",
			oracle: func() any { return new(events.KinesisEvent) },
			build: func(t testing.TB) []byte {
				env := Records("")
				return env.Append(nil, "", encodeAll(kinesisConformanceRecords(), AppendKinesis))
			},
		},
		{
			name: "kinesis-window", conformance: "kinesis-time-window-event.json",
			oracle: func() any { return new(events.KinesisTimeWindowEvent) },
			build: func(t testing.TB) []byte {
				r := KinesisRecord{
					ShardID: "shardId-000000000006", PartitionKey: "1",
					SequenceNumber:              "49590338271490256608559692538361571095921575989136588898",
					Data:                        []byte("Hello, this is a test."),
					ApproximateArrivalTimestamp: time.Unix(1607497475, 0),
					InvokeIdentityArn:           "arn:aws:iam::123456789012:role/lambda-kinesis-role",
					AWSRegion:                   "us-east-1",
					EventSourceARN:              "arn:aws:kinesis:us-east-1:123456789012:stream/lambda-stream",
				}
				env := StreamRecords(r.EventSourceARN)
				env.Window = &Window{
					Start: time.Date(2020, 12, 9, 7, 4, 0, 0, time.UTC), End: time.Date(2020, 12, 9, 7, 6, 0, 0, time.UTC),
					State: json.RawMessage(`{"1":"state 1","2":"state 2"}`), ShardID: "shardId-000000000006",
				}
				return env.Append(nil, "", [][]byte{AppendKinesis(nil, &r)})
			},
		},
		{
			name: "dynamodb", conformance: "dynamodb-event.json",
			oracle: func() any { return new(events.DynamoDBEvent) },
			build: func(t testing.TB) []byte {
				env := Records("")
				return env.Append(nil, "", encodeAll(ddbConformanceRecords(t), AppendDynamoDB))
			},
		},
		{
			name:   "dynamodb-window",
			oracle: func() any { return new(events.DynamoDBTimeWindowEvent) },
			build: func(t testing.TB) []byte {
				recs := ddbConformanceRecords(t)[:1]
				recs[0].UserIdentity = nil
				recs[0].EventName = "MODIFY"
				recs[0].OldImage = json.RawMessage(`{"key":{"S":"binary"},"val":{"S":"old"}}`)
				env := StreamRecords(recs[0].EventSourceARN)
				env.Window = &Window{
					Start: time.Date(2020, 12, 9, 7, 4, 0, 0, time.UTC), End: time.Date(2020, 12, 9, 7, 6, 0, 0, time.UTC),
					ShardID: "shardId-00000001573689847184-864758bb", IsFinalInvokeForWindow: true, IsWindowTerminatedEarly: true,
				}
				return env.Append(nil, "", encodeAll(recs, AppendDynamoDB))
			},
		},
		{
			name: "kafka-msk", conformance: "kafka-event.json",
			oracle: func() any { return new(events.KafkaEvent) },
			build: func(t testing.TB) []byte {
				k := b64(t, "OGQ1NTk2YjQtMTgxMy00MjM4LWIyNGItNmRhZDhlM2QxYzBj")
				r := KafkaRecord{Topic: "AWSKafkaTopic", Partition: 0, Offset: 0, Timestamp: ms(1595035749700),
					TimestampType: "CREATE_TIME", Key: k, Value: k,
					Headers: []KafkaHeader{{Key: "headerKey", Value: []byte{118, 0xDC, 0, 127, 0x80}}}}
				b := NewBuilder(MSK("arn:aws:kafka:us-west-2:012345678901:cluster/ExampleMSKCluster/e9f754c6-d29a-4430-a7db-958a19fd2c54-4",
					"b-2.demo-cluster-1.a1bcde.c1.kafka.us-east-1.amazonaws.com:9092,b-1.demo-cluster-1.a1bcde.c1.kafka.us-east-1.amazonaws.com:9092"))
				b.Add(KafkaGroup(r.Topic, r.Partition), AppendKafka(nil, &r))
				return b.Bytes()
			},
		},
		{
			// Self-managed Kafka, two partitions interleaved, a keyless record
			// and a record with no headers.
			name:   "kafka-self-managed",
			oracle: func() any { return new(events.KafkaEvent) },
			build: func(t testing.TB) []byte {
				b := NewBuilder(SelfManagedKafka("127.0.0.1:9092,127.0.0.1:9093"))
				recs := []KafkaRecord{
					{Topic: "orders", Partition: 1, Offset: 41, Timestamp: ms(1749116692330), Key: []byte("k1"), Value: []byte(`{"a":1}`),
						Headers: []KafkaHeader{{Key: "h", Value: []byte("\u00eb")}, {Key: "h", Value: nil}}},
					{Topic: "orders", Partition: 0, Offset: 7, Timestamp: ms(1749116692331), TimestampType: "LOG_APPEND_TIME", Value: []byte("v")},
					{Topic: "orders", Partition: 1, Offset: 42, Timestamp: ms(1749116692332), Key: []byte("k2"), Value: []byte("x")},
				}
				for i := range recs {
					b.Add(KafkaGroup(recs[i].Topic, recs[i].Partition), AppendKafka(nil, &recs[i]))
				}
				return b.Bytes()
			},
		},
		{
			// An empty (non-nil) key and value are written as "" (aws-lambda-go
			// drops them: omitempty), a nil key is left out.
			name: "kafka-empty",
			build: func(t testing.TB) []byte {
				b := NewBuilder(SelfManagedKafka("127.0.0.1:9092"))
				r := KafkaRecord{Topic: "t", Partition: 3, Offset: 1, Timestamp: ms(1), Key: []byte{}, Value: []byte{}}
				b.Add(KafkaGroup(r.Topic, r.Partition), AppendKafka(nil, &r))
				return b.Bytes()
			},
		},
		{
			name: "rabbitmq", conformance: "rabbitmq-event.json",
			oracle: func() any { return new(events.RabbitMQEvent) },
			build: func(t testing.TB) []byte {
				m := RabbitMQMessage{
					Properties: RabbitMQProperties{
						ContentType: "text/plain",
						Headers: []RabbitMQHeader{
							{Name: "header1", Value: RabbitMQBytes([]byte("value1"))},
							{Name: "header2", Value: RabbitMQBytes([]byte("value2"))},
							{Name: "numberInHeader", Value: json.RawMessage("10")},
						},
						DeliveryMode: u8(1), Priority: u8(34), Expiration: "60000",
						Timestamp: time.Unix(2021, 0), UserID: "AIDACKCEVSQ6C2EXAMPLE", BodySize: i64(80),
					},
					Data: b64(t, "eyJ0aW1lb3V0IjowLCJkYXRhIjoiQ1pybWYwR3c4T3Y0YnFMUXhENEUifQ=="),
				}
				env := RabbitMQ("arn:aws:mq:us-west-2:112556298976:broker:test:b-9bcfa592-423a-4942-879d-eb284b418fc8")
				return env.Append(nil, RabbitMQGroup("test", "/"), [][]byte{AppendRabbitMQ(nil, &m)})
			},
		},
		{
			// Spec 1.6 (AWS's example). Not round-tripped: aws-lambda-go types
			// "expiration" as a number while AWS's example sends a string.
			name: "activemq",
			build: func(t testing.TB) []byte {
				m := ActiveMQMessage{
					MessageID:   "ID:b-9bcfa592-423a-4942-879d-eb284b418fc8-1.mq.us-east-2.amazonaws.com-37557-1234520418293-4:1:1:1:1",
					MessageType: "jms/text-message", DeliveryMode: 1, Expiration: 60000, Priority: 1,
					CorrelationID: "myJMSCoID", Destination: "testQueue", Data: []byte("ABC:AAAA"),
					Timestamp: ms(1598827811958), BrokerInTime: ms(1598827811958), BrokerOutTime: ms(1598827811959),
					Properties: []ActiveMQProperty{{"index", "1"}, {"doAlarm", "false"}, {"myCustomProperty", "value"}},
				}
				env := ActiveMQ("arn:aws:mq:us-east-2:111122223333:broker:test:b-9bcfa592-423a-4942-879d-eb284b418fc8")
				return env.Append(nil, "", [][]byte{AppendActiveMQ(nil, &m)})
			},
		},
		{
			// Spec 1.8 (AWS's example).
			name: "documentdb",
			build: func(t testing.TB) []byte {
				ev := json.RawMessage(`{"_id":{"_data":"0163eeb6e7000000090100000009000041e1"},"clusterTime":{"$timestamp":{"t":1676588775,"i":9}},"documentKey":{"_id":{"$oid":"63eeb6e7d418cd98afb1c1d7"}},"fullDocument":{"_id":{"$oid":"63eeb6e7d418cd98afb1c1d7"},"anyField":"sampleValue"},"ns":{"db":"test_database","coll":"test_collection"},"operationType":"insert"}`)
				env := DocumentDB("arn:aws:rds:us-east-1:123456789012:cluster:canaryclusterb2a659a2-qo5tcmqkcl03")
				return env.Append(nil, "", [][]byte{AppendDocumentDB(nil, ev)})
			},
		},
	}
}

func TestGolden(t *testing.T) {
	for _, tc := range goldenCases() {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.build(t)
			if !json.Valid(got) {
				t.Fatalf("invalid JSON: %s", got)
			}
			path := filepath.Join("..", "testdata", "payload", tc.name+".json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./payload -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("encoding differs from %s:\n got %s\nwant %s", path, got, want)
			}
		})
	}
}

// TestConformance checks that the events equal the aws-lambda-go fixtures
// as JSON values (every field, every value; key order aside).
func TestConformance(t *testing.T) {
	for _, tc := range goldenCases() {
		if tc.conformance == "" {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(conformanceDir, tc.conformance))
			if err != nil {
				t.Fatal(err)
			}
			want, got := decodeValue(t, raw), decodeValue(t, tc.build(t))
			if diff := cmp.Diff(want, got, numberCmp); diff != "" {
				t.Errorf("event differs from %s (-fixture +esmd):\n%s", tc.conformance, diff)
			}
		})
	}
}

// TestRoundTrip decodes each event into its aws-lambda-go type, encodes it
// again with encoding/json and checks that no field or value was lost.
func TestRoundTrip(t *testing.T) {
	for _, tc := range goldenCases() {
		if tc.oracle == nil {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			ev := tc.build(t)
			typed := tc.oracle()
			dec := json.NewDecoder(bytes.NewReader(ev))
			dec.DisallowUnknownFields()
			if err := dec.Decode(typed); err != nil {
				t.Fatalf("decode into %T: %v", typed, err)
			}
			back, err := json.Marshal(typed)
			if err != nil {
				t.Fatal(err)
			}
			if path, ok := contains(decodeValue(t, back), decodeValue(t, ev), "$"); !ok {
				t.Errorf("%T lost or changed %s\n esmd: %s\n back: %s", typed, path, ev, back)
			}
		})
	}
}

func decodeValue(t testing.TB, b []byte) any {
	t.Helper()
	var v any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return v
}

var numberCmp = cmp.Comparer(func(a, b json.Number) bool {
	if a == b {
		return true
	}
	fa, ea := a.Float64()
	fb, eb := b.Float64()
	return ea == nil && eb == nil && math.Abs(fa-fb) < 1e-3
})

// contains reports whether every value of want is in got (got may have
// extra object keys, such as nulls a Go type adds).
func contains(got, want any, path string) (string, bool) {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return path, false
		}
		for k, wv := range w {
			gv, ok := g[k]
			if !ok {
				return path + "." + k, false
			}
			if p, ok := contains(gv, wv, path+"."+k); !ok {
				return p, false
			}
		}
		return "", true
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return path, false
		}
		for i := range w {
			if p, ok := contains(g[i], w[i], fmt.Sprintf("%s[%d]", path, i)); !ok {
				return p, false
			}
		}
		return "", true
	default:
		return path, cmp.Equal(got, want, numberCmp)
	}
}

func TestKafkaSize(t *testing.T) {
	many := make([]byte, 300)
	for i := range many {
		many[i] = byte(i)
	}
	cases := []struct {
		name string
		r    KafkaRecord
	}{
		{"empty", KafkaRecord{}},
		{"nil key", KafkaRecord{Topic: "t", Value: []byte("v")}},
		{"empty key", KafkaRecord{Topic: "t", Key: []byte{}, Value: []byte{}}},
		{"extremes", KafkaRecord{Topic: "t\"\\\n\x01é\xff", Partition: -2147483648, Offset: -9223372036854775808,
			Timestamp: time.UnixMilli(9223372036854775807), Key: []byte("k1"), Value: []byte("val")}},
		{"log append", KafkaRecord{Topic: "t", Partition: 7, Offset: 1234567890, TimestampType: "LOG_APPEND_TIME",
			Timestamp: time.UnixMilli(1700000000123), Value: many}},
		{"headers", KafkaRecord{Topic: "t", Headers: []KafkaHeader{{"a", many}, {"", nil}, {"q\"", []byte{0x80, 0x7f, 0, 0xff, 0x9c, 0x9d, 0xf6, 0xf5}}}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := AppendKafka(nil, &c.r)
			if n := KafkaSize(&c.r); n != len(got) {
				t.Fatalf("KafkaSize %d, AppendKafka %d bytes: %s", n, len(got), got)
			}
		})
	}
}

func TestKinesisSize(t *testing.T) {
	many := make([]byte, 301)
	for i := range many {
		many[i] = byte(i)
	}
	cases := []struct {
		name string
		r    KinesisRecord
	}{
		{"empty", KinesisRecord{}},
		{"plain", KinesisRecord{ShardID: "shardId-000000000000", PartitionKey: "k", SequenceNumber: "4959", Data: []byte("{}"),
			ApproximateArrivalTimestamp: time.UnixMilli(1700000000000), InvokeIdentityArn: "arn:aws:iam::1:role/r", AWSRegion: "us-east-1",
			EventSourceARN: "arn:aws:kinesis:us-east-1:1:stream/s"}},
		{"escapes and fraction", KinesisRecord{ShardID: "s\"\\", PartitionKey: "k\n\x01é\xff<", SequenceNumber: "1\u2028",
			Data: many, ApproximateArrivalTimestamp: time.UnixMilli(1700000000120), EncryptionType: "KMS"}},
		{"before 1970", KinesisRecord{ApproximateArrivalTimestamp: time.UnixMilli(-1001), Data: many[:2]}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := AppendKinesis(nil, &c.r)
			if n := KinesisSize(&c.r); n != len(got) {
				t.Fatalf("KinesisSize %d, AppendKinesis %d bytes: %s", n, len(got), got)
			}
		})
	}
}

// TestAppendBase64 compares AppendBase64 with the standard encoder for
// every length up to 100 (each tail of the eight-byte steps) and each
// byte value.
func TestAppendBase64(t *testing.T) {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	for _, src := range [][]byte{all, bytes.Repeat([]byte{0xff}, 100), make([]byte, 100)} {
		for n := 0; n <= 100 && n <= len(src); n++ {
			got := AppendBase64([]byte("x"), src[:n])
			want := `x"` + base64.StdEncoding.EncodeToString(src[:n]) + `"`
			if string(got) != want {
				t.Fatalf("AppendBase64 of %d bytes %x = %s, want %s", n, src[:n], got, want)
			}
		}
	}
	if got, want := AppendBase64(nil, all), `"`+base64.StdEncoding.EncodeToString(all)+`"`; string(got) != want {
		t.Fatalf("AppendBase64 of every byte value = %s, want %s", got, want)
	}
}

func TestDynamoDBSize(t *testing.T) {
	ts := time.Unix(1700000000, 0)
	cases := []struct {
		name string
		r    DynamoDBRecord
	}{
		{"empty", DynamoDBRecord{}},
		{"full", DynamoDBRecord{EventID: "e\"1", EventName: "MODIFY", EventVersion: "1.0", AWSRegion: "eu-west-1",
			UserIdentity:                json.RawMessage(`{"type":"Service","principalId":"dynamodb.amazonaws.com"}`),
			ApproximateCreationDateTime: ts, Keys: json.RawMessage(`{"k":{"S":"é"}}`), NewImage: json.RawMessage(`{}`),
			OldImage: json.RawMessage(`{"a":{"N":"1"}}`), SequenceNumber: "123", SizeBytes: -9223372036854775808,
			StreamViewType: "NEW_AND_OLD_IMAGES", EventSourceARN: "arn\x01"}},
		{"fractional time", DynamoDBRecord{ApproximateCreationDateTime: time.UnixMilli(-1500), SizeBytes: 42}},
	}
	size := func(m json.RawMessage) int {
		if m == nil {
			return -1
		}
		return len(m)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := AppendDynamoDB(nil, &c.r)
			if n := DynamoDBSize(&c.r, size(c.r.NewImage), size(c.r.OldImage)); n != len(got) || !json.Valid(got) {
				t.Fatalf("DynamoDBSize %d, AppendDynamoDB %d bytes (valid %v): %s", n, len(got), json.Valid(got), got)
			}
			// The same record with its images written on demand.
			lazy := c.r
			lazy.NewImage, lazy.OldImage, lazy.Images = nil, nil, images{c.r.NewImage, c.r.OldImage}
			if on := AppendDynamoDB(nil, &lazy); string(on) != string(got) {
				t.Fatalf("with Images:\n%s\nwant\n%s", on, got)
			}
		})
	}
}

// images writes fixed images on demand.
type images struct{ new, old json.RawMessage }

func (m images) AppendImage(dst []byte, old bool) ([]byte, bool) {
	im := m.new
	if old {
		im = m.old
	}
	return append(dst, im...), im != nil
}
