package filter

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func sqsRecord(body string) string {
	b, _ := json.Marshal(body)
	return `{"messageId":"059f36b4-87a3-44ab-83d2-661975830a7d","receiptHandle":"AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",` +
		`"body":` + string(b) + `,"attributes":{"ApproximateReceiveCount":"1","SentTimestamp":"1545082649183",` +
		`"SenderId":"AIDAIENQZJOLO23YVJ4VO","ApproximateFirstReceiveTimestamp":"1545082649185"},` +
		`"messageAttributes":{"Name":{"stringValue":"x","stringListValues":[],"binaryListValues":[],"dataType":"String"}},` +
		`"md5OfBody":"e4e68fb7bd0e697a0ae8f1bb342846b3","eventSource":"aws:sqs",` +
		`"eventSourceARN":"arn:aws:sqs:us-east-2:123456789012:my-queue","awsRegion":"us-east-2"}`
}

func kinesisRecord(data string) string {
	return `{"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":"1","sequenceNumber":"49590338271490256608559692538361571095921575989136588898",` +
		`"data":"` + data + `","approximateArrivalTimestamp":1545084650.987},"eventSource":"aws:kinesis","eventVersion":"1.0",` +
		`"eventID":"shardId-000000000006:49590338271490256608559692538361571095921575989136588898","eventName":"aws:kinesis:record",` +
		`"invokeIdentityArn":"arn:aws:iam::123456789012:role/lambda-role","awsRegion":"us-east-2",` +
		`"eventSourceARN":"arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream"}`
}

const ddbRecord = `{"eventID":"c4ca4238a0b923820dcc509a6f75849b","eventName":"INSERT","eventVersion":"1.1","eventSource":"aws:dynamodb",` +
	`"awsRegion":"us-east-1","dynamodb":{"ApproximateCreationDateTime":1664559083.0,"Keys":{"ID":{"S":"ABCD"},"Number":{"N":"1234"}},` +
	`"NewImage":{"k":{"S":"v"},"n":{"N":"5"},"AccountManager":{"S":"Pat Candella"},"Organizations":{"L":[{"S":"Sales"},{"S":"Marketing"}]}},` +
	`"SequenceNumber":"111","SizeBytes":26,"StreamViewType":"NEW_IMAGE"},` +
	`"eventSourceARN":"arn:aws:dynamodb:us-east-1:123456789012:table/ExampleTableWithStream/stream/2015-06-27T00:48:05.899"}`

func kafkaRecord(value string) string {
	return `{"topic":"mytopic","partition":0,"offset":15,"timestamp":1545084650987,"timestampType":"CREATE_TIME",` +
		`"key":"` + b64("key") + `","value":"` + value + `","headers":[{"headerKey":[104,101,97,100,101,114,86,97,108,117,101]}]}`
}

func rabbitRecord(data string) string {
	return `{"basicProperties":{"contentType":"text/plain","deliveryMode":1,"priority":34,"headers":{"header1":{"bytes":[118,97,108,117,101,49]}},` +
		`"bodySize":80},"redelivered":false,"data":"` + data + `"}`
}

func activeRecord(data string) string {
	return `{"messageID":"ID:b-9bcfa592-423a-4942-879d-eb284b418fc8-1.mq.us-west-2.amazonaws.com-37557-1234520418293-4:1:1:1:1",` +
		`"messageType":"jms/text-message","deliveryMode":1,"replyTo":null,"type":null,"expiration":"60000","priority":1,` +
		`"correlationId":"myJMSCoID","redelivered":false,"destination":{"physicalName":"testQueue"},"data":"` + data + `",` +
		`"timestamp":1598827811958,"brokerInTime":1598827811958,"brokerOutTime":1598827811959,"properties":{"index":"1"}}`
}

func TestSourceDecoding(t *testing.T) {
	notUTF8 := base64.StdEncoding.EncodeToString([]byte{0xff, 0xfe, 0x00, 0x80})
	cases := []struct {
		name    string
		src     Source
		pattern string
		record  string
		want    bool
	}{
		// SQS: body is parsed as JSON when it is JSON (spec 8.3/8.4).
		{"sqs json body match", SourceSQS, `{"body":{"RequestCode":["AAAA"]}}`, sqsRecord(`{"RecordNumber":1234,"TimeStamp":"yyyy-mm-ddThh:mm:ss","RequestCode":"AAAA"}`), true},
		{"sqs json body no match (deleted)", SourceSQS, `{"body":{"RequestCode":["BBBB"]}}`, sqsRecord(`{"RecordNumber":1234,"RequestCode":"AAAA"}`), false},
		{"sqs numeric below", SourceSQS, `{"body":{"RecordNumber":[{"numeric":[">",9999]}]}}`, sqsRecord(`{"RecordNumber":1234}`), false},
		{"sqs numeric above", SourceSQS, `{"body":{"RecordNumber":[{"numeric":[">",9999]}]}}`, sqsRecord(`{"RecordNumber":10000}`), true},
		{"sqs plain body, json pattern: dropped", SourceSQS, `{"body":{"RequestCode":["BBBB"]}}`, sqsRecord(`hello`), false},
		{"sqs plain body, json exists:false pattern: dropped", SourceSQS, `{"body":{"RequestCode":[{"exists":false}]}}`, sqsRecord(`hello`), false},
		{"sqs plain body, plain pattern", SourceSQS, `{"body":["hello"]}`, sqsRecord(`hello`), true},
		{"sqs plain body, plain prefix", SourceSQS, `{"body":[{"prefix":"hel"}]}`, sqsRecord(`hello world`), true},
		{"sqs json body, plain pattern: dropped", SourceSQS, `{"body":[{"prefix":"{"}]}`, sqsRecord(`{"a":1}`), false},
		{"sqs json body, plain exists:false: dropped", SourceSQS, `{"body":[{"exists":false}]}`, sqsRecord(`{"a":1}`), false},
		{"sqs truncated json is a plain string", SourceSQS, `{"body":[{"prefix":"{\"a\""}]}`, sqsRecord(`{"a":1`), true},
		{"sqs metadata eventSource", SourceSQS, `{"eventSource":["aws:sqs"]}`, sqsRecord(`hello`), true},
		{"sqs metadata attributes", SourceSQS, `{"attributes":{"ApproximateReceiveCount":["1"]}}`, sqsRecord(`{}`), true},
		{"sqs metadata and body", SourceSQS, `{"messageAttributes":{"Name":{"stringValue":["x"]}},"body":{"k":[{"numeric":["=",3.0e0]}]}}`, sqsRecord(`{"k":3}`), true},
		{"sqs body escapes", SourceSQS, `{"body":{"s":["a\"b\\c/é"]}}`, sqsRecord(`{"s":"a\"b\\c\/\u00e9"}`), true},

		// Kinesis: data is base64 JSON; the kinesis fields are top-level.
		{"kinesis data json", SourceKinesis, `{"data":{"event_type":["function_1"]}}`, kinesisRecord(b64(`{"event_type":"function_1","message":"foo"}`)), true},
		{"kinesis data json other", SourceKinesis, `{"data":{"event_type":["function_2"]}}`, kinesisRecord(b64(`{"event_type":"function_1","message":"foo"}`)), false},
		{"kinesis nested data", SourceKinesis, `{"data":{"order":{"type":["buy"]}}}`, kinesisRecord(b64(`{"record":12345,"order":{"type":"buy","stock":"ANYCO","quantity":1000}}`)), true},
		{"kinesis metadata and data", SourceKinesis, `{"partitionKey":["1"],"data":{"Location":["Los Angeles"]}}`, kinesisRecord(b64(`{"City":"Seattle","State":"WA"}`)), false},
		{"kinesis partitionKey top-level", SourceKinesis, `{"partitionKey":["1"]}`, kinesisRecord(b64(`x`)), true},
		{"kinesis partitionKey nested", SourceKinesis, `{"kinesis":{"partitionKey":["1"]}}`, kinesisRecord(b64(`x`)), true},
		{"kinesis kinesis.data decoded", SourceKinesis, `{"kinesis":{"data":{"a":[1]}}}`, kinesisRecord(b64(`{"a":1}`)), true},
		{"kinesis outer metadata", SourceKinesis, `{"eventSource":["aws:kinesis"],"eventName":["aws:kinesis:record"]}`, kinesisRecord(b64(`x`)), true},
		{"kinesis arrival numeric", SourceKinesis, `{"approximateArrivalTimestamp":[{"numeric":[">",0]}]}`, kinesisRecord(b64(`x`)), true},
		{"kinesis plain data, json pattern: dropped", SourceKinesis, `{"data":{"a":[1]}}`, kinesisRecord(b64(`hello`)), false},
		{"kinesis plain data, json exists:false: dropped", SourceKinesis, `{"data":{"a":[{"exists":false}]}}`, kinesisRecord(b64(`hello`)), false},
		{"kinesis plain data, metadata only", SourceKinesis, `{"partitionKey":["1"]}`, kinesisRecord(b64(`hello`)), true},
		{"kinesis bad base64, json pattern: dropped", SourceKinesis, `{"data":{"a":[1]}}`, kinesisRecord(`!!!`), false},
		{"kinesis json data with escaped slash in base64", SourceKinesis, `{"data":{"k":["??>"]}}`, kinesisRecord(strings.ReplaceAll(b64(`{"k":"??>"}`), "/", `\/`)), true},

		{"kinesis flattened record", SourceKinesis, `{"partitionKey":["1"],"data":{"a":[1]}}`, `{"partitionKey":"1","data":"` + b64(`{"a":1}`) + `","eventSource":"aws:kinesis"}`, true},

		// DynamoDB: typed attribute values as they are; N is a string.
		{"ddb typed key", SourceDynamoDB, `{"dynamodb":{"NewImage":{"k":{"S":["v"]}}}}`, ddbRecord, true},
		{"ddb missing type key", SourceDynamoDB, `{"dynamodb":{"NewImage":{"k":["v"]}}}`, ddbRecord, false},
		{"ddb numeric on N does not apply", SourceDynamoDB, `{"dynamodb":{"NewImage":{"n":{"N":[{"numeric":[">",0]}]}}}}`, ddbRecord, false},
		{"ddb N as string", SourceDynamoDB, `{"dynamodb":{"NewImage":{"n":{"N":["5"]}}}}`, ddbRecord, true},
		{"ddb creation time numeric", SourceDynamoDB, `{"dynamodb":{"ApproximateCreationDateTime":[{"numeric":[">",0]}]}}`, ddbRecord, true},
		{"ddb metadata filterable", SourceDynamoDB, `{"eventSource":["aws:dynamodb"],"eventName":["INSERT"],"dynamodb":{"Keys":{"ID":{"S":["ABCD"]}}}}`, ddbRecord, true},
		{"ddb key mismatch", SourceDynamoDB, `{"dynamodb":{"Keys":{"Number":{"N":["4567"]}}}}`, ddbRecord, false},
		{"ddb or values", SourceDynamoDB, `{"dynamodb":{"NewImage":{"AccountManager":{"S":["Pat Candella","Shirley Rodriguez"]}}}}`, ddbRecord, true},
		{"ddb exists inside list", SourceDynamoDB, `{"dynamodb":{"NewImage":{"Organizations":{"L":{"S":[{"exists":true}]}}}}}`, ddbRecord, true},
		{"ddb exists on non-leaf", SourceDynamoDB, `{"dynamodb":{"NewImage":{"Organizations":[{"exists":true}]}}}`, ddbRecord, false},
		{"ddb duplicate key last wins", SourceDynamoDB, `{"dynamodb":{"NewImage":{"AccountManager":{"S":["Pat Candella"]}}},"dynamodb":{"OldImage":{"AccountManager":{"S":["Terry Whitlock"]}}}}`, ddbRecord, false},

		// Kafka: value is base64, JSON or a plain string.
		{"kafka json value", SourceKafka, `{"value":{"device_ID":[{"prefix":"AB"}]}}`, kafkaRecord(b64(`{"device_ID":"AB1234","session":{"state":"IN_PROGRESS","duration":315}}`)), true},
		{"kafka plain value excluded", SourceKafka, `{"value":[{"anything-but":["error"]}]}`, kafkaRecord(b64(`error`)), false},
		{"kafka plain value kept", SourceKafka, `{"value":[{"anything-but":["error"]}]}`, kafkaRecord(b64(`Hello, this is a test.`)), true},
		{"kafka plain value, json pattern: metadata only", SourceKafka, `{"value":{"x":["y"]}}`, kafkaRecord(b64(`hello`)), true},
		{"kafka plain value, json pattern, metadata fails", SourceKafka, `{"topic":["other"],"value":{"x":["y"]}}`, kafkaRecord(b64(`hello`)), false},
		{"kafka json value, plain pattern: metadata only", SourceKafka, `{"topic":["mytopic"],"value":["nope"]}`, kafkaRecord(b64(`{"a":1}`)), true},
		{"kafka non-utf8: metadata only", SourceKafka, `{"value":["x"]}`, kafkaRecord(notUTF8), true},
		{"kafka non-utf8, metadata fails", SourceKafka, `{"partition":[1],"value":["x"]}`, kafkaRecord(notUTF8), false},
		{"kafka metadata numeric", SourceKafka, `{"offset":[{"numeric":[">=",15]}]}`, kafkaRecord(b64(`x`)), true},

		// Amazon MQ: data is base64.
		{"rabbitmq json data", SourceMQ, `{"data":{"k":["v"]}}`, rabbitRecord(b64(`{"k":"v"}`)), true},
		{"rabbitmq plain data", SourceMQ, `{"data":[{"prefix":"Hel"}]}`, rabbitRecord(b64(`Hello`)), true},
		{"rabbitmq metadata", SourceMQ, `{"basicProperties":{"contentType":["text/plain"]}}`, rabbitRecord(b64(`x`)), true},
		{"activemq json data", SourceMQ, `{"data":{"k":[{"numeric":["<",2]}]}}`, activeRecord(b64(`{"k":1}`)), true},
		{"activemq destination", SourceMQ, `{"destination":{"physicalName":["testQueue"]}}`, activeRecord(b64(`x`)), true},

		// Without a source the record is matched as is.
		{"none: body not decoded", SourceNone, `{"body":{"a":[1]}}`, sqsRecord(`{"a":1}`), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !json.Valid([]byte(c.record)) {
				t.Fatalf("test record is not JSON: %s", c.record)
			}
			if got := mustMatch(t, Lambda, []string{c.pattern}, c.src, []byte(c.record)); got != c.want {
				t.Errorf("got %v, want %v\npattern %s\nrecord %s", got, c.want, c.pattern, c.record)
			}
		})
	}
}

func TestCreateTimeSourceChecks(t *testing.T) {
	if _, err := Compile([]string{`{"data":["x"]}`}, WithSource(SourceKinesis)); err == nil {
		t.Error("kinesis: plain pattern on data accepted")
	}
	if _, err := Compile([]string{`{"data":{"x":["y"]}}`}, WithSource(SourceKinesis)); err != nil {
		t.Errorf("kinesis: json pattern on data rejected: %v", err)
	}
	if _, err := Compile([]string{`{"eventName":["INSERT"]}`}, WithSource(SourceDocumentDB)); err == nil {
		t.Error("docdb: filter accepted")
	}
	if _, err := Compile([]string{`{"data":["x"]}`}, WithSource(SourceMQ)); err != nil {
		t.Errorf("mq: plain pattern rejected: %v", err)
	}
}

func TestLambdaRecordedInvalidPatterns(t *testing.T) {
	// test_sqs_invalid_event_filter: all give "Invalid filter pattern definition."
	for _, p := range []string{`null`, `"simple string"`, `{"eventSource":"aws:sqs"}`, `{"eventSource":[]}`, ``, `{}`} {
		_, err := Compile([]string{p})
		var pe *PatternError
		if !errors.As(err, &pe) {
			t.Errorf("%q: want *PatternError, got %v", p, err)
			continue
		}
		if pe.Err != nil {
			t.Errorf("%q: limit error %v", p, pe.Err)
		}
	}
}

func TestLimits(t *testing.T) {
	p := `{"a":["b"]}`
	six := []string{p, p, p, p, p, p}
	if _, err := Compile(six); !errors.Is(err, ErrTooManyFilters) {
		t.Errorf("6 filters: got %v, want ErrTooManyFilters", err)
	}
	if _, err := Compile(six, WithMaxFilters(QuotaMaxFilters)); err != nil {
		t.Errorf("6 filters with quota 10: %v", err)
	}
	long := `{"a":["` + strings.Repeat("x", MaxPatternLength) + `"]}`
	if _, err := Compile([]string{long}); !errors.Is(err, ErrPatternTooLong) {
		t.Errorf("long pattern: got %v", err)
	}
	ok := `{"a":["` + strings.Repeat("é", MaxPatternLength-10) + `"]}`
	if _, err := Compile([]string{ok}); err != nil {
		t.Errorf("4096-character pattern: %v", err)
	}
	m, err := Compile(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := m.Match(SourceSQS, []byte(`not even json`)); !got {
		t.Error("no filters must match everything")
	}
	if _, err := Compile([]string{p}, WithDialect(EventBridge), WithDialect(Lambda)); err == nil {
		t.Error("duplicate option accepted")
	}
}

func TestFiltersAreORed(t *testing.T) {
	m, err := Compile([]string{`{"a":["1"]}`, `{"b":[{"numeric":[">",5]}]}`})
	if err != nil {
		t.Fatal(err)
	}
	for ev, want := range map[string]bool{
		`{"a":"1"}`:         true,
		`{"b":6}`:           true,
		`{"a":"2","b":5}`:   false,
		`{"a":"2","b":5.5}`: true,
	} {
		if got, err := m.Match(SourceNone, []byte(ev)); err != nil || got != want {
			t.Errorf("%s: got %v, %v; want %v", ev, got, err, want)
		}
	}
}
