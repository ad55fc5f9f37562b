package payload_test

import (
	"fmt"
	"time"

	"github.com/esmd/esmd/payload"
)

// A poller encodes each record once; the batcher asks the Builder for the
// exact event size before adding a record, and the dispatcher sends
// Bytes().
func ExampleBuilder() {
	rec := payload.AppendKinesis(nil, &payload.KinesisRecord{
		ShardID: "shardId-000000000006", PartitionKey: "1",
		SequenceNumber:              "49590338271490256608559692538361571095921575989136588898",
		Data:                        []byte("Hello, this is a test."),
		ApproximateArrivalTimestamp: time.UnixMilli(1545084650987),
		InvokeIdentityArn:           "arn:aws:iam::123456789012:role/lambda-role",
		AWSRegion:                   "us-east-2",
		EventSourceARN:              "arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream",
	})
	b := payload.NewBuilder(payload.Records(""))
	if b.SizeWith("", len(rec)) <= payload.MaxPayloadSize {
		b.Add("", rec)
	}
	fmt.Println(b.Size() == len(b.Bytes()))
	fmt.Println(string(b.Bytes()))
	// Output:
	// true
	// {"Records":[{"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":"1","sequenceNumber":"49590338271490256608559692538361571095921575989136588898","data":"SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==","approximateArrivalTimestamp":1545084650.987},"eventSource":"aws:kinesis","eventVersion":"1.0","eventID":"shardId-000000000006:49590338271490256608559692538361571095921575989136588898","eventName":"aws:kinesis:record","invokeIdentityArn":"arn:aws:iam::123456789012:role/lambda-role","awsRegion":"us-east-2","eventSourceARN":"arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream"}]}
}
