package destination_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/esmd/esmd/destination"
	"github.com/esmd/esmd/pollers/kafka"
	"github.com/esmd/esmd/pollers/stream"
)

// recordings holds the real-AWS recordings (see testdata/conformance/SOURCES.md).
const recordings = "../testdata/conformance/aws-recordings"

// node is a JSON value that keeps object key order.
type node struct {
	keys []string
	vals []*node // object values, or array elements when keys is nil
	obj  bool
	arr  bool
	v    any // scalar
}

func parseOrdered(t testing.TB, b []byte) *node {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	n, err := decodeNode(dec)
	if err != nil {
		t.Fatalf("%v: %.200s", err, b)
	}
	return n
}

func decodeNode(dec *json.Decoder) (*node, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch tok {
	case json.Delim('{'):
		n := &node{obj: true}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return nil, err
			}
			v, err := decodeNode(dec)
			if err != nil {
				return nil, err
			}
			n.keys = append(n.keys, k.(string))
			n.vals = append(n.vals, v)
		}
		_, err = dec.Token()
		return n, err
	case json.Delim('['):
		n := &node{arr: true}
		for dec.More() {
			v, err := decodeNode(dec)
			if err != nil {
				return nil, err
			}
			n.vals = append(n.vals, v)
		}
		_, err = dec.Token()
		return n, err
	}
	return &node{v: tok}, nil
}

func (n *node) get(path ...string) *node {
	for _, p := range path {
		if n == nil {
			return nil
		}
		var next *node
		if n.arr {
			var i int
			fmt.Sscan(p, &i)
			if i < len(n.vals) {
				next = n.vals[i]
			}
		}
		for i, k := range n.keys {
			if k == p {
				next = n.vals[i]
			}
		}
		n = next
	}
	return n
}

var placeholderRE = regexp.MustCompile(`<([a-z-]+)(?::([^>]*))?>`)

// placeholderRegexp turns a recorded string with placeholders into a
// regexp: "<timestamp:2022-07-13T13:48:01.000Z>" pins the format (digits
// are any digits), other placeholders match any non-empty text.
func placeholderRegexp(s string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	last := 0
	for _, m := range placeholderRE.FindAllStringSubmatchIndex(s, -1) {
		b.WriteString(regexp.QuoteMeta(s[last:m[0]]))
		if s[m[2]:m[3]] == "timestamp" && m[4] >= 0 {
			b.WriteString(regexp.MustCompile(`\d`).ReplaceAllString(regexp.QuoteMeta(s[m[4]:m[5]]), `\d`))
		} else {
			b.WriteString(".+")
		}
		last = m[1]
	}
	b.WriteString(regexp.QuoteMeta(s[last:]))
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// match compares got with a recorded value: same keys in the same order
// (when ordered), same scalars, except recorded placeholders ("<uuid:1>",
// "<timestamp:2022-07-13T13:48:01.000Z>"): a timestamp placeholder pins the
// format, others any string.
func match(got, rec *node, ordered bool, path string) error {
	switch {
	case rec.obj:
		if !got.obj {
			return fmt.Errorf("%s: not an object", path)
		}
		gk, rk := append([]string(nil), got.keys...), append([]string(nil), rec.keys...)
		if !ordered {
			slicesSort(gk)
			slicesSort(rk)
		}
		if strings.Join(gk, ",") != strings.Join(rk, ",") {
			return fmt.Errorf("%s: keys %v, recorded %v", path, got.keys, rec.keys)
		}
		for i, k := range rec.keys {
			if err := match(got.get(k), rec.vals[i], ordered, path+"."+k); err != nil {
				return err
			}
		}
		return nil
	case rec.arr:
		if !got.arr || len(got.vals) != len(rec.vals) {
			return fmt.Errorf("%s: array length", path)
		}
		for i := range rec.vals {
			if err := match(got.vals[i], rec.vals[i], ordered, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		return nil
	}
	if s, ok := rec.v.(string); ok && strings.Contains(s, "<") {
		gs, ok := got.v.(string)
		if n, isNum := got.v.(json.Number); isNum {
			gs, ok = n.String(), true // a placeholder that replaced a number
		}
		if !ok || !placeholderRegexp(s).MatchString(gs) {
			return fmt.Errorf("%s: %v does not match recorded %s", path, got.v, s)
		}
		return nil
	}
	if fmt.Sprint(got.v) != fmt.Sprint(rec.v) {
		return fmt.Errorf("%s: %v, recorded %v", path, got.v, rec.v)
	}
	return nil
}

func slicesSort(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func recording(t testing.TB, file, test string, path ...string) *node {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(recordings, file))
	if err != nil {
		t.Fatal(err)
	}
	root := parseOrdered(t, b)
	for i, k := range root.keys {
		if strings.HasSuffix(k, "::"+test) {
			n := root.vals[i].get(append([]string{"recorded-content"}, path...)...)
			if n == nil {
				t.Fatalf("%s: no %v", test, path)
			}
			return n
		}
	}
	t.Fatalf("no recording %s in %s", test, file)
	return nil
}

var (
	at    = time.Date(2022, 7, 13, 13, 48, 1, 123e6, time.UTC)
	fnArn = "arn:aws:lambda:us-east-1:111111111111:function:fn"
)

func kinesisInfo(n int) *stream.BatchInfo {
	return &stream.BatchInfo{Member: stream.KinesisBatchInfo, ShardID: "shardId-000000000000", StartSequenceNumber: "49630", EndSequenceNumber: "49630",
		ApproximateArrivalOfFirstRecord: at.Add(-time.Second), ApproximateArrivalOfLastRecord: at.Add(-time.Second),
		BatchSize: n, StreamARN: "arn:aws:kinesis:us-east-1:111111111111:stream/s"}
}

// TestRecordedShapes compares records with the on-failure records AWS
// delivered in the recordings: key order, values, timestamp formats.
func TestRecordedShapes(t *testing.T) {
	ddbInfo := &stream.BatchInfo{Member: stream.DDBStreamBatchInfo, Seconds: true, ShardID: "shardId-00000001573689847184-864758bb", StartSequenceNumber: "8000", EndSequenceNumber: "8000",
		ApproximateArrivalOfFirstRecord: at, ApproximateArrivalOfLastRecord: at, BatchSize: 1,
		StreamARN: "arn:aws:dynamodb:us-east-1:111111111111:table/t/stream/2022-07-13T13:48:01.000"}
	tests := []struct {
		name       string
		file, test string
		path       []string
		rec        destination.Record
		mode       destination.PayloadMode
		ordered    bool
	}{
		{
			name: "kinesis SQS RetryAttemptsExhausted", file: "test_lambda_integration_kinesis.snapshot.json",
			test: "test_kinesis_event_source_mapping_with_on_failure_destination_config", path: []string{"sqs_payload", "Messages", "0", "Body"},
			rec: destination.Record{RequestID: "r", FunctionARN: fnArn, Condition: destination.RetryAttemptsExhausted, ApproximateInvokeCount: 2,
				Response: &destination.ResponseContext{StatusCode: 200, ExecutedVersion: "$LATEST", FunctionError: "Unhandled"}, Timestamp: at, Info: kinesisInfo(1)},
			ordered: true,
		},
		{
			name: "kinesis partial batch failure", file: "test_lambda_integration_kinesis.snapshot.json",
			test: "test_kinesis_report_batch_item_failures", path: []string{"sqs_payload", "Messages", "0", "Body"},
			rec: destination.Record{RequestID: "r", FunctionARN: fnArn, Condition: destination.RetryAttemptsExhausted, ApproximateInvokeCount: 4,
				Response: &destination.ResponseContext{StatusCode: 200, ExecutedVersion: "$LATEST"}, Timestamp: at, Info: kinesisInfo(1)},
			ordered: true,
		},
		{
			name: "kinesis RecordAgeExceeded", file: "test_lambda_integration_kinesis.snapshot.json",
			test: "test_kinesis_maximum_record_age_exceeded[expire-while-retrying]", path: []string{"record_age_exceeded_payload", "Messages", "0", "Body"},
			rec: destination.Record{RequestID: "r", FunctionARN: fnArn, Condition: destination.RecordAgeExceeded, ApproximateInvokeCount: 8,
				Timestamp: at, Info: kinesisInfo(1)},
			ordered: true,
		},
		{
			name: "dynamodb SQS", file: "test_lambda_integration_dynamodbstreams.snapshot.json",
			test: "test_dynamodb_event_source_mapping_with_on_failure_destination_config", path: []string{"destination_queue_messages", "Messages", "0", "Body"},
			rec: destination.Record{RequestID: "r", FunctionARN: fnArn, Condition: destination.RetryAttemptsExhausted, ApproximateInvokeCount: 2,
				Response: &destination.ResponseContext{StatusCode: 200, ExecutedVersion: "$LATEST", FunctionError: "Unhandled"}, Timestamp: at, Info: ddbInfo},
			ordered: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := recording(t, tc.file, tc.test, tc.path...)
			got := parseOrdered(t, tc.rec.JSON(tc.mode))
			if err := match(got, rec, tc.ordered, "$"); err != nil {
				t.Errorf("%v\n got %s", err, tc.rec.JSON(tc.mode))
			}
		})
	}
}

func TestRecordedS3Object(t *testing.T) {
	// The S3 object of the kinesis recording; the snapshot shows JSON
	// strings parsed and keys sorted, so the payload string is parsed and
	// order is not compared.
	rec := recording(t, "test_lambda_integration_kinesis.snapshot.json", "test_kinesis_event_source_mapping_with_s3_on_failure_destination", "record_body")
	event := `{"Records":[{"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":"custom","sequenceNumber":"4963","data":"eyJpbnB1dCI6ICJoZWxsbyIsICJ2YWx1ZSI6ICJ3b3JsZCIsICJyYWlzZV9lcnJvciI6IDF9","approximateArrivalTimestamp":1657720081.123},"eventSource":"aws:kinesis","eventVersion":"1.0","eventID":"shardId-000000000000:4963","eventName":"aws:kinesis:record","invokeIdentityArn":"arn:aws:iam::111111111111:role/r","awsRegion":"us-east-1","eventSourceARN":"arn:aws:kinesis:us-east-1:111111111111:stream/s"}]}`
	r := destination.Record{RequestID: "r", FunctionARN: fnArn, Condition: destination.RetryAttemptsExhausted, ApproximateInvokeCount: 2,
		Response: &destination.ResponseContext{StatusCode: 200, ExecutedVersion: "$LATEST", FunctionError: "Unhandled"}, Timestamp: at,
		Info: kinesisInfo(1), Payload: []byte(event)}
	body := r.JSON(destination.PayloadString)
	var obj map[string]any
	if err := json.Unmarshal(body, &obj); err != nil {
		t.Fatal(err)
	}
	if s, ok := obj["payload"].(string); !ok || s != event {
		t.Fatalf("payload is not the event as a JSON string: %v", obj["payload"])
	}
	// Parse the string as the snapshot does, then compare.
	obj["payload"] = json.RawMessage(event)
	parsed, _ := json.Marshal(obj)
	if err := match(parseOrdered(t, parsed), rec, false, "$"); err != nil {
		t.Errorf("%v\n%s", err, parsed)
	}
}

func TestRecordJSON(t *testing.T) {
	kafkaInfo := &kafka.BatchInfo{BatchSize: 3, EventSourceARN: "arn:aws:kafka:us-east-1:123456789012:cluster/c/abc", BootstrapServers: "b-1:9092",
		PayloadSize: 2039, RecordsInfo: []kafka.PartitionInfo{
			{Partition: "Topic-0", FirstRecordOffset: 10, LastRecordOffset: 11, FirstRecordTimestamp: at, LastRecordTimestamp: at.Add(time.Second)},
			{Partition: "Topic-1", FirstRecordOffset: 5, LastRecordOffset: 5, FirstRecordTimestamp: at, LastRecordTimestamp: at},
		}}
	tests := []struct {
		name string
		rec  destination.Record
		mode destination.PayloadMode
		want string
	}{
		{
			name: "kafka SQS",
			rec: destination.Record{RequestID: "r", FunctionARN: fnArn, Condition: destination.RetryAttemptsExhausted, ApproximateInvokeCount: 3,
				Response: &destination.ResponseContext{StatusCode: 200, ExecutedVersion: "$LATEST", FunctionError: "Unhandled"}, Timestamp: at, Info: kafkaInfo},
			want: `{"requestContext":{"requestId":"r","functionArn":"arn:aws:lambda:us-east-1:111111111111:function:fn","condition":"RetryAttemptsExhausted","approximateInvokeCount":3},"responseContext":{"statusCode":200,"executedVersion":"$LATEST","functionError":"Unhandled"},"version":"1.0","timestamp":"2022-07-13T13:48:01.123Z","KafkaBatchInfo":{"batchSize":3,"eventSourceArn":"arn:aws:kafka:us-east-1:123456789012:cluster/c/abc","bootstrapServers":"b-1:9092","payloadSize":2039,"recordsInfo":{"Topic-0":{"firstRecordOffset":"10","lastRecordOffset":"11","firstRecordTimestamp":"2022-07-13T13:48:01.123Z","lastRecordTimestamp":"2022-07-13T13:48:02.123Z"},"Topic-1":{"firstRecordOffset":"5","lastRecordOffset":"5","firstRecordTimestamp":"2022-07-13T13:48:01.123Z","lastRecordTimestamp":"2022-07-13T13:48:01.123Z"}}}}`,
		},
		{
			name: "kafka MaximumPayloadSizeExceeded",
			rec: destination.Record{RequestID: "r", FunctionARN: fnArn, Condition: destination.MaximumPayloadSizeExceeded, ApproximateInvokeCount: 0, NullResponse: true,
				Timestamp: at, Info: &kafka.BatchInfo{BatchSize: 1, BootstrapServers: "b:9092", PayloadSize: 7000000,
					RecordsInfo: []kafka.PartitionInfo{{Partition: "t-0", FirstRecordOffset: 1, LastRecordOffset: 1, FirstRecordTimestamp: at, LastRecordTimestamp: at}}}},
			want: `{"requestContext":{"requestId":"r","functionArn":"arn:aws:lambda:us-east-1:111111111111:function:fn","condition":"MaximumPayloadSizeExceeded","approximateInvokeCount":0},"responseContext":null,"version":"1.0","timestamp":"2022-07-13T13:48:01.123Z","KafkaBatchInfo":{"batchSize":1,"bootstrapServers":"b:9092","payloadSize":7000000,"recordsInfo":{"t-0":{"firstRecordOffset":"1","lastRecordOffset":"1","firstRecordTimestamp":"2022-07-13T13:48:01.123Z","lastRecordTimestamp":"2022-07-13T13:48:01.123Z"}}}}`,
		},
		{
			name: "kafka topic destination",
			rec: destination.Record{RequestID: "r", FunctionARN: fnArn + ":$LATEST", Condition: destination.RetryAttemptsExhausted, ApproximateInvokeCount: 3,
				Response: &destination.ResponseContext{StatusCode: 200, ExecutedVersion: "$LATEST", FunctionError: "Unhandled"}, Timestamp: at,
				Info:    &kafka.BatchInfo{BatchSize: 1, BootstrapServers: "b:9098", PayloadSize: 1162, RecordInfo: &kafka.RecordInfo{Offset: 100, Timestamp: at}},
				Payload: []byte(`{"eventSource":"SelfManagedKafka","bootstrapServers":"b:9098","records":{}}`)},
			mode: destination.PayloadObject,
			want: `{"requestContext":{"requestId":"r","functionArn":"arn:aws:lambda:us-east-1:111111111111:function:fn:$LATEST","condition":"RetryAttemptsExhausted","approximateInvokeCount":3},"responseContext":{"statusCode":200,"executedVersion":"$LATEST","functionError":"Unhandled"},"version":"1.0","timestamp":"2022-07-13T13:48:01.123Z","KafkaBatchInfo":{"batchSize":1,"bootstrapServers":"b:9098","payloadSize":1162,"recordInfo":{"offset":"100","timestamp":"2022-07-13T13:48:01.123Z"}},"payload":{"eventSource":"SelfManagedKafka","bootstrapServers":"b:9098","records":{}}}`,
		},
		{
			name: "dynamodb whole seconds",
			rec: destination.Record{RequestID: "r", FunctionARN: fnArn, Condition: destination.RecordAgeExceeded, ApproximateInvokeCount: 1, Timestamp: at,
				Info: &stream.BatchInfo{Member: stream.DDBStreamBatchInfo, Seconds: true, ShardID: "s", StartSequenceNumber: "1", EndSequenceNumber: "2", ApproximateArrivalOfFirstRecord: at,
					ApproximateArrivalOfLastRecord: at.Add(1500 * time.Millisecond), BatchSize: 2, StreamARN: "arn"}},
			want: `{"requestContext":{"requestId":"r","functionArn":"arn:aws:lambda:us-east-1:111111111111:function:fn","condition":"RecordAgeExceeded","approximateInvokeCount":1},"version":"1.0","timestamp":"2022-07-13T13:48:01.123Z","DDBStreamBatchInfo":{"shardId":"s","startSequenceNumber":"1","endSequenceNumber":"2","approximateArrivalOfFirstRecord":"2022-07-13T13:48:01Z","approximateArrivalOfLastRecord":"2022-07-13T13:48:02Z","batchSize":2,"streamArn":"arn"}}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := string(tc.rec.JSON(tc.mode))
			if got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
			if !json.Valid([]byte(got)) {
				t.Error("invalid JSON")
			}
		})
	}
}
