package payload

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// recordingsDir holds the real-AWS recordings (see testdata/conformance/SOURCES.md).
const recordingsDir = "../testdata/conformance/aws-recordings"

// keyOrder returns every object key path of a JSON value in document order
// ("$.a.b", arrays as [i]).
func keyOrder(t testing.TB, b []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	var out []string
	var walk func(path string)
	walk = func(path string) {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		switch tok {
		case json.Delim('{'):
			for dec.More() {
				k, _ := dec.Token()
				p := path + "." + k.(string)
				out = append(out, p)
				walk(p)
			}
			dec.Token()
		case json.Delim('['):
			for i := 0; dec.More(); i++ {
				walk(path + "[]")
			}
			dec.Token()
		}
	}
	walk("$")
	return out
}

// recordedValue returns the raw JSON at path inside a recording entry.
func recordedValue(t testing.TB, file, test string, path ...string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(recordingsDir, file))
	if err != nil {
		t.Fatal(err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		t.Fatal(err)
	}
	for k, v := range top {
		if !strings.HasSuffix(k, "::"+test) {
			continue
		}
		cur := v
		first := func(r json.RawMessage) json.RawMessage {
			// Arrays on the way: their first element.
			for len(r) > 0 && r[0] == '[' {
				var arr []json.RawMessage
				json.Unmarshal(r, &arr)
				r = arr[0]
			}
			return r
		}
		for _, p := range append([]string{"recorded-content"}, path...) {
			var m map[string]json.RawMessage
			if err := json.Unmarshal(first(cur), &m); err != nil || m[p] == nil {
				t.Fatalf("%s: no %s", test, p)
			}
			cur = m[p]
		}
		return first(cur)
	}
	t.Fatalf("no recording %s", test)
	return nil
}

// TestRecordedKeyOrder compares the key order of esmd's records with
// records AWS delivered (where the recording kept AWS's order).
func TestRecordedKeyOrder(t *testing.T) {
	sqs := SQSMessage{MessageID: "m", ReceiptHandle: "r", Body: "{}",
		Attributes: SQSAttributes{ApproximateReceiveCount: "1", SentTimestamp: "1", SenderID: "s", ApproximateFirstReceiveTimestamp: "1"},
		MessageAttributes: []SQSMessageAttribute{
			{Name: "Title", DataType: "String", StringValue: "The Whistler"},
			{Name: "Author", DataType: "String", StringValue: "John Grisham"},
			{Name: "WeeksOn", DataType: "Number", StringValue: "6"},
		}, EventSourceARN: "arn", AWSRegion: "us-east-1"}
	kin := KinesisRecord{ShardID: "shardId-000000000000", PartitionKey: "custom", SequenceNumber: "1", Data: []byte("x"),
		ApproximateArrivalTimestamp: time.UnixMilli(1), InvokeIdentityArn: "role", AWSRegion: "us-east-1", EventSourceARN: "arn"}
	ddb := DynamoDBRecord{EventID: "e", EventName: "INSERT", AWSRegion: "us-east-1", ApproximateCreationDateTime: time.Unix(1, 0),
		Keys: json.RawMessage(`{"my_partition_key":{"S":"hello world"}}`), NewImage: json.RawMessage(`{"binary_key":{"B":"Zm9vYmFy"},"my_partition_key":{"S":"hello world"}}`),
		SequenceNumber: "1", SizeBytes: 70, StreamViewType: "NEW_IMAGE", EventSourceARN: "arn"}
	tests := []struct {
		name       string
		file, test string
		path       []string
		got        []byte
	}{
		{"sqs", "test_lambda_integration_sqs.snapshot.json", "test_message_body_and_attributes_passed_correctly",
			[]string{"first_attempt", "Messages", "Body", "event", "Records"}, AppendSQS(nil, &sqs)},
		{"kinesis (S3 payload)", "test_lambda_integration_kinesis.snapshot.json", "test_kinesis_event_source_mapping_with_s3_on_failure_destination",
			[]string{"record_body", "payload", "Records"}, AppendKinesis(nil, &kin)},
		{"dynamodb", "test_lambda_integration_dynamodbstreams.snapshot.json", "test_dynamodb_event_source_mapping",
			[]string{"event_logs", "Records"}, AppendDynamoDB(nil, &ddb)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := recordedValue(t, tc.file, tc.test, tc.path...)
			want, got := strings.Join(keyOrder(t, rec), "\n"), strings.Join(keyOrder(t, tc.got), "\n")
			if want != got {
				t.Errorf("key order differs\n got:\n%s\nrecorded:\n%s", got, want)
			}
		})
	}
}
