package sqsurl

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

// TestLookupRefusesNonQueueARNs: what is not a queue ARN never reaches SQS.
func TestLookupRefusesNonQueueARNs(t *testing.T) {
	c := sqs.New(sqs.Options{Region: "us-east-1", BaseEndpoint: aws.String("http://127.0.0.1:1")})
	for _, arn := range []string{"", "q", "arn:aws:sns:us-east-1:1:t", "arn:aws:sqs:us-east-1:1:", "arn:aws:sqs:us-east-1:1:a:b"} {
		if _, err := Lookup(context.Background(), c, arn); err == nil || !strings.Contains(err.Error(), "not a queue ARN") {
			t.Errorf("%q: %v", arn, err)
		}
	}
}
