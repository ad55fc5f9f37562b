package filter

import (
	"fmt"
	"strings"
)

// Source names the event source whose record layout and decoding rules
// apply when a record is matched. The record is the JSON of one record
// exactly as it appears in the Lambda event the function receives.
type Source string

// The sources. SourceNone matches the JSON as is, like EventBridge's
// TestEventPattern does.
const (
	SourceNone       Source = ""
	SourceSQS        Source = "sqs"
	SourceKinesis    Source = "kinesis"
	SourceDynamoDB   Source = "dynamodb"
	SourceKafka      Source = "kafka"
	SourceMQ         Source = "mq"
	SourceDocumentDB Source = "docdb"
)

// ParseSource accepts a source name as users write it: the constants'
// values plus "rabbitmq", "activemq", "msk", "documentdb" and "none".
func ParseSource(s string) (Source, error) {
	switch strings.ToLower(s) {
	case "", "none", "raw", "eventbridge":
		return SourceNone, nil
	case "sqs":
		return SourceSQS, nil
	case "kinesis":
		return SourceKinesis, nil
	case "dynamodb", "ddb", "dynamodbstreams":
		return SourceDynamoDB, nil
	case "kafka", "msk", "selfmanagedkafka":
		return SourceKafka, nil
	case "mq", "rabbitmq", "activemq", "rmq":
		return SourceMQ, nil
	case "docdb", "documentdb":
		return SourceDocumentDB, nil
	}
	return SourceNone, fmt.Errorf("unknown event source %q (want sqs, kinesis, dynamodb, kafka, mq or docdb)", s)
}

// SupportsFiltering reports whether Lambda accepts FilterCriteria for the
// source; DocumentDB change streams do not support filtering.
func (s Source) SupportsFiltering() bool { return s != SourceDocumentDB }

// DataKey is the record field that holds the payload Lambda decodes before
// matching ("body", "data", "value"), or "" when there is none to decode.
// DynamoDB's "dynamodb" is already JSON and is matched as is.
func (s Source) DataKey() string {
	switch s {
	case SourceSQS:
		return "body"
	case SourceKinesis, SourceMQ:
		return "data"
	case SourceKafka:
		return "value"
	}
	return ""
}

// dataClass is what a record's payload turned out to be.
type dataClass uint8

const (
	dataNone      dataClass = iota // no payload field seen
	dataJSON                       // a JSON object or array
	dataPlain                      // any other valid UTF-8 text
	dataUndecoded                  // not base64, or not UTF-8
)
