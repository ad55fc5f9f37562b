package payload

import (
	"encoding/base64"
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
)

// The benchmarks encode batches of 100 records with 1 KB of record data
// each (SQS body, Kinesis data, DynamoDB image, Kafka value, RabbitMQ data)
// into the full event, and report MB/s of record data and records/s. Each
// kind has an encoding/json baseline of the aws-lambda-go type for the same
// batch.

const (
	benchRecords = 100
	benchSize    = 1024
)

func benchData(seed uint64) []byte {
	// Printable JSON-ish text with some characters that need escaping.
	rng := rand.New(rand.NewPCG(seed, 7))
	const alphabet = `abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 {}:,"`
	b := make([]byte, benchSize)
	for i := range b {
		b[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return b
}

func report(b *testing.B) {
	b.SetBytes(benchRecords * benchSize)
	b.ReportAllocs()
	b.Cleanup(func() {
		if b.Elapsed() > 0 {
			b.ReportMetric(float64(b.N)*benchRecords/b.Elapsed().Seconds(), "records/s")
		}
	})
}

func BenchmarkEncode(b *testing.B) {
	now := time.UnixMilli(1700000000123)
	b.Run("sqs", func(b *testing.B) {
		msgs := make([]SQSMessage, benchRecords)
		for i := range msgs {
			msgs[i] = SQSMessage{MessageID: "059f36b4-87a3-44ab-83d2-661975830a7d", ReceiptHandle: "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
				Body: string(benchData(uint64(i))), MD5OfBody: "e4e68fb7bd0e697a0ae8f1bb342846b3",
				Attributes: SQSAttributes{ApproximateReceiveCount: "1", SentTimestamp: "1545082649183", SenderID: "AIDAIENQZJOLO23YVJ4VO",
					ApproximateFirstReceiveTimestamp: "1545082649185"},
				EventSourceARN: "arn:aws:sqs:us-east-2:123456789012:my-queue", AWSRegion: "us-east-2"}
		}
		benchEncode(b, Records(""), msgs, AppendSQS, func() any {
			ev := events.SQSEvent{}
			for _, m := range msgs {
				ev.Records = append(ev.Records, events.SQSMessage{MessageId: m.MessageID, ReceiptHandle: m.ReceiptHandle, Body: m.Body,
					Attributes:        map[string]string{"ApproximateReceiveCount": "1", "SentTimestamp": "1545082649183", "SenderId": "AIDAIENQZJOLO23YVJ4VO", "ApproximateFirstReceiveTimestamp": "1545082649185"},
					MessageAttributes: map[string]events.SQSMessageAttribute{}, Md5OfBody: m.MD5OfBody, EventSource: "aws:sqs",
					EventSourceARN: m.EventSourceARN, AWSRegion: m.AWSRegion})
			}
			return ev
		})
	})
	b.Run("kinesis", func(b *testing.B) {
		recs := make([]KinesisRecord, benchRecords)
		for i := range recs {
			recs[i] = KinesisRecord{ShardID: "shardId-000000000006", PartitionKey: "pk-" + strconv.Itoa(i),
				SequenceNumber: "49590338271490256608559692538361571095921575989136588898", Data: benchData(uint64(i)),
				ApproximateArrivalTimestamp: now, InvokeIdentityArn: "arn:aws:iam::123456789012:role/lambda-role",
				AWSRegion: "us-east-2", EventSourceARN: "arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream"}
		}
		benchEncode(b, Records(""), recs, AppendKinesis, func() any {
			ev := events.KinesisEvent{}
			for _, r := range recs {
				ev.Records = append(ev.Records, events.KinesisEventRecord{AwsRegion: r.AWSRegion, EventID: r.ShardID + ":" + r.SequenceNumber,
					EventName: "aws:kinesis:record", EventSource: "aws:kinesis", EventSourceArn: r.EventSourceARN, EventVersion: "1.0",
					InvokeIdentityArn: r.InvokeIdentityArn, Kinesis: events.KinesisRecord{ApproximateArrivalTimestamp: events.SecondsEpochTime{Time: now},
						Data: r.Data, PartitionKey: r.PartitionKey, SequenceNumber: r.SequenceNumber, KinesisSchemaVersion: "1.0"}})
			}
			return ev
		})
	})
	b.Run("dynamodb", func(b *testing.B) {
		recs := make([]DynamoDBRecord, benchRecords)
		typed := make([]map[string]events.DynamoDBAttributeValue, benchRecords)
		for i := range recs {
			s := string(benchData(uint64(i)))
			typed[i] = map[string]events.DynamoDBAttributeValue{"Id": events.NewNumberAttribute("101"), "Message": events.NewStringAttribute(s)}
			img, _ := json.Marshal(typed[i])
			recs[i] = DynamoDBRecord{EventID: "c4ca4238a0b923820dcc509a6f75849b", EventName: "INSERT", AWSRegion: "us-east-1",
				ApproximateCreationDateTime: time.Unix(1480642020, 0), Keys: json.RawMessage(`{"Id":{"N":"101"}}`), NewImage: img,
				SequenceNumber: "4421584500000000017450439091", SizeBytes: 1050, StreamViewType: "NEW_IMAGE",
				EventSourceARN: "arn:aws:dynamodb:us-east-1:123456789012:table/ExampleTableWithStream/stream/2015-06-27T00:48:05.899"}
		}
		benchEncode(b, Records(""), recs, AppendDynamoDB, func() any {
			ev := events.DynamoDBEvent{}
			for i, r := range recs {
				ev.Records = append(ev.Records, events.DynamoDBEventRecord{AWSRegion: r.AWSRegion, EventID: r.EventID, EventName: r.EventName,
					EventSource: "aws:dynamodb", EventVersion: "1.1", EventSourceArn: r.EventSourceARN,
					Change: events.DynamoDBStreamRecord{ApproximateCreationDateTime: events.SecondsEpochTime{Time: r.ApproximateCreationDateTime},
						Keys: map[string]events.DynamoDBAttributeValue{"Id": events.NewNumberAttribute("101")}, NewImage: typed[i],
						SequenceNumber: r.SequenceNumber, SizeBytes: r.SizeBytes, StreamViewType: r.StreamViewType}})
			}
			return ev
		})
	})
	b.Run("kafka", func(b *testing.B) {
		recs := make([]KafkaRecord, benchRecords)
		for i := range recs {
			recs[i] = KafkaRecord{Topic: "mytopic", Partition: 0, Offset: int64(i), Timestamp: now, Key: []byte("key-" + strconv.Itoa(i)),
				Value: benchData(uint64(i)), Headers: []KafkaHeader{{Key: "headerKey", Value: []byte("headerValue")}}}
		}
		arn, servers := "arn:aws:kafka:us-east-1:123456789012:cluster/demo/751d2973", "b-1:9092,b-2:9092"
		env := MSK(arn, servers)
		benchEncode(b, env, recs, AppendKafka, func() any {
			ev := events.KafkaEvent{EventSource: "aws:kafka", EventSourceARN: arn, BootstrapServers: servers,
				Records: map[string][]events.KafkaRecord{}}
			for _, r := range recs {
				hv := events.JSONNumberBytes(r.Headers[0].Value)
				ev.Records["mytopic-0"] = append(ev.Records["mytopic-0"], events.KafkaRecord{Topic: r.Topic, Partition: int64(r.Partition),
					Offset: r.Offset, Timestamp: events.MilliSecondsEpochTime{Time: now}, TimestampType: "CREATE_TIME",
					Key: "a2V5", Value: string(r.Value), Headers: []map[string]events.JSONNumberBytes{{"headerKey": hv}}})
			}
			return ev
		})
	})
	b.Run("rabbitmq", func(b *testing.B) {
		recs := make([]RabbitMQMessage, benchRecords)
		for i := range recs {
			recs[i] = RabbitMQMessage{Properties: RabbitMQProperties{ContentType: "text/plain", DeliveryMode: u8(1), Priority: u8(34),
				Expiration: "60000", Timestamp: time.Unix(2021, 0), UserID: "AIDACKCEVSQ6C2EXAMPLE"}, Data: benchData(uint64(i))}
		}
		arn := "arn:aws:mq:us-east-2:111122223333:broker:pizzaBroker:b-9bcfa592"
		env := RabbitMQ(arn)
		benchEncode(b, env, recs, AppendRabbitMQ, func() any {
			ev := events.RabbitMQEvent{EventSource: "aws:rmq", EventSourceARN: arn, MessagesByQueue: map[string][]events.RabbitMQMessage{}}
			for _, r := range recs {
				ev.MessagesByQueue["q::/"] = append(ev.MessagesByQueue["q::/"], events.RabbitMQMessage{
					BasicProperties: events.RabbitMQBasicProperties{ContentType: "text/plain", DeliveryMode: 1, Priority: 34, Expiration: "60000",
						Timestamp: "Jan 1, 1970, 12:33:41 AM", UserID: "AIDACKCEVSQ6C2EXAMPLE", BodySize: uint64(len(r.Data))},
					Data: string(r.Data)})
			}
			return ev
		})
	})
}

func benchEncode[T any](b *testing.B, env Envelope, recs []T, enc func([]byte, *T) []byte, baseline func() any) {
	group := ""
	switch {
	case strings.Contains(env.Head, "aws:kafka"):
		group = "mytopic-0"
	case strings.Contains(env.Head, "aws:rmq"):
		group = "q::/"
	}
	b.Run("esmd", func(b *testing.B) {
		// What a poller and the dispatcher do per batch: encode each record
		// (the poller's goroutine), then build the event once.
		arena := make([]byte, 0, benchRecords*2*benchSize)
		out := make([]byte, 0, benchRecords*2*benchSize)
		builder := NewBuilder(env)
		report(b)
		for b.Loop() {
			arena = arena[:0]
			builder.Reset(env)
			for i := range recs {
				start := len(arena)
				arena = enc(arena, &recs[i])
				builder.Add(group, arena[start:len(arena):len(arena)])
			}
			out = builder.AppendTo(out[:0])
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		ev := baseline()
		report(b)
		for b.Loop() {
			if _, err := json.Marshal(ev); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkBase64 compares AppendBase64 with the standard library's
// AppendEncode on a 1 KB value (a Kafka record's).
func BenchmarkBase64(b *testing.B) {
	src := benchData(7)[:1024]
	dst := make([]byte, 0, 2048)
	b.Run("AppendBase64", func(b *testing.B) {
		b.SetBytes(int64(len(src)))
		for b.Loop() {
			dst = AppendBase64(dst[:0], src)
		}
	})
	b.Run("stdlib", func(b *testing.B) {
		b.SetBytes(int64(len(src)))
		for b.Loop() {
			dst = append(base64.StdEncoding.AppendEncode(append(dst[:0], '"'), src), '"')
		}
	})
}
