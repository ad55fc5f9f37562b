package sqs

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/pipeline"
	"github.com/esmd/esmd/pollers/pollertest"
	"github.com/esmd/esmd/source"
)

// testVT is the visibility timeout of the conformance queues: longer than
// any test, so a record that comes back came back because the poller
// released it.
const testVT = "30"

func conformanceSource(t *testing.T, fifo bool) pollertest.Source {
	f := newFauxqs(t)
	url, arn := f.queue(t, fifo, map[string]string{"VisibilityTimeout": testVT})
	return pollertest.Source{
		Open: func(t *testing.T) pipeline.Poller { return f.open(t, mapping(arn, 10)) },
		Produce: func(t *testing.T, key, body string) {
			group := ""
			if fifo {
				// fauxqs returns at most one message per group per receive
				// and SQS hands out no more of a group while one of its
				// messages is in flight, whereas the suite reads every record
				// before it finishes any. One group per message keeps FIFO
				// queue mechanics (dedup ids, sequence numbers, visibility)
				// under the suite; per-group order is TestFIFOGroupOrder's.
				group = key + "-" + body
			}
			f.send(t, url, group, body)
		},
		Body: func(t *testing.T, r source.Record) string { return decode(t, r).Body },
	}
}

func TestConformance(t *testing.T) {
	pollertest.Run(t, pollertest.Harness{
		Features: pollertest.Features{Redelivery: 5 * time.Second},
		Setup:    func(t *testing.T) pollertest.Source { return conformanceSource(t, false) },
	})
}

func TestConformanceFIFO(t *testing.T) {
	pollertest.Run(t, pollertest.Harness{
		Features: pollertest.Features{Redelivery: 5 * time.Second},
		Setup:    func(t *testing.T) pollertest.Source { return conformanceSource(t, true) },
	})
}

// recordedRecord is the record of test_message_body_and_attributes_passed_correctly
// (test_lambda_integration_sqs.snapshot.json), keys in AWS's order.
const recordedRecord = `{"messageId":"<uuid:1>","receiptHandle":"<receipt-handle:2>","body":"{\"destination\": \"<queue-url:1>\", \"fail_attempts\": 0}","attributes":{"ApproximateReceiveCount":"1","SentTimestamp":"sent-timestamp","SenderId":"sender-id","ApproximateFirstReceiveTimestamp":"<approximate-first-receive-timestamp>"},"messageAttributes":{"WeeksOn":{"stringValue":"6","stringListValues":[],"binaryListValues":[],"dataType":"Number"},"Author":{"stringValue":"John Grisham","stringListValues":[],"binaryListValues":[],"dataType":"String"},"Title":{"stringValue":"The Whistler","stringListValues":[],"binaryListValues":[],"dataType":"String"}},"md5OfMessageAttributes":"d25a6aea97eb8f585bfa92d314504a92","md5OfBody":"<md5-of-body:1>","eventSource":"aws:sqs","eventSourceARN":"arn:<partition>:sqs:<region>:111111111111:<resource:1>","awsRegion":"<region>"}`

// TestRecordedPayload sends the message of the recording to a real queue
// and checks that the record esmd builds from what SQS returns is the
// recorded one byte for byte, once the values the recording replaced with
// placeholders are replaced the same way. The md5OfMessageAttributes is not
// a placeholder: fauxqs computes it and it must match AWS's.
func TestRecordedPayload(t *testing.T) {
	f := newFauxqs(t)
	url, arn := f.queue(t, false, nil)
	checkRecordedSource(t)
	body := `{"destination": "<queue-url:1>", "fail_attempts": 0}`
	_, err := f.c.SendMessage(context.Background(), &awssqs.SendMessageInput{QueueUrl: &url, MessageBody: &body,
		MessageAttributes: map[string]types.MessageAttributeValue{
			"Title":   {DataType: aws.String("String"), StringValue: aws.String("The Whistler")},
			"Author":  {DataType: aws.String("String"), StringValue: aws.String("John Grisham")},
			"WeeksOn": {DataType: aws.String("Number"), StringValue: aws.String("6")},
		}})
	if err != nil {
		t.Fatal(err)
	}
	p := f.open(t, mapping(arn, 10))
	defer p.Close()
	recs := pollN(t, p, 1, 30*time.Second)
	r := recs[0]
	s := decode(t, r)
	got := string(r.Data)
	repl := []string{
		`"messageId":` + q(s.MessageID), `"messageId":"<uuid:1>"`,
		`"receiptHandle":` + q(s.ReceiptHandle), `"receiptHandle":"<receipt-handle:2>"`,
		`"SentTimestamp":` + q(s.Attributes["SentTimestamp"]), `"SentTimestamp":"sent-timestamp"`,
		`"SenderId":` + q(s.Attributes["SenderId"]), `"SenderId":"sender-id"`,
		`"ApproximateFirstReceiveTimestamp":` + q(s.Attributes["ApproximateFirstReceiveTimestamp"]), `"ApproximateFirstReceiveTimestamp":"<approximate-first-receive-timestamp>"`,
		`"md5OfBody":` + q(s.MD5OfBody), `"md5OfBody":"<md5-of-body:1>"`,
		q(arn), `"arn:<partition>:sqs:<region>:111111111111:<resource:1>"`,
		`"awsRegion":"us-east-1"`, `"awsRegion":"<region>"`,
	}
	got = strings.NewReplacer(repl...).Replace(got)
	if got != recordedRecord {
		t.Errorf("record differs from the recording\n got: %s\nwant: %s", got, recordedRecord)
	}
	if r.ID != s.MessageID || r.Lane == "" || r.Arrival.IsZero() {
		t.Errorf("record metadata: ID %q Lane %q Arrival %v", r.ID, r.Lane, r.Arrival)
	}
	if err := p.Done(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	f.waitEmpty(t, url, 5*time.Second)
}

func q(s string) string { b, _ := json.Marshal(s); return string(b) }

// checkRecordedSource checks recordedRecord against the recording when
// ../shared is there (it is not vendored).
func checkRecordedSource(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "..", "shared", "conformance", "aws-recordings", "test_lambda_integration_sqs.snapshot.json"))
	if err != nil {
		t.Logf("recording not found, using the copy in the test: %v", err)
		return
	}
	var snap map[string]struct {
		Content struct {
			First struct {
				Messages []struct {
					Body struct {
						Event struct {
							Records []json.RawMessage `json:"Records"`
						} `json:"event"`
					} `json:"Body"`
				} `json:"Messages"`
			} `json:"first_attempt"`
		} `json:"recorded-content"`
	}
	if err := json.Unmarshal(b, &snap); err != nil {
		t.Fatal(err)
	}
	for k, v := range snap {
		if strings.HasSuffix(k, "::test_message_body_and_attributes_passed_correctly") {
			var a, b any
			_ = json.Unmarshal(v.Content.First.Messages[0].Body.Event.Records[0], &a)
			_ = json.Unmarshal([]byte(recordedRecord), &b)
			if fmt.Sprint(a) != fmt.Sprint(b) {
				t.Fatalf("recordedRecord is not the recording's record:\n%s", v.Content.First.Messages[0].Body.Event.Records[0])
			}
			return
		}
	}
	t.Fatal("recording test_message_body_and_attributes_passed_correctly not found")
}
