// Package sqsurl resolves an SQS queue ARN to the queue's URL with
// GetQueueUrl (QueueName and QueueOwnerAWSAccountId from the ARN, endpoint
// from the client). The SQS poller, its create-time check and the SQS
// OnFailure destination share it.
package sqsurl

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/esmd/esmd/esm"
)

// Lookup returns the URL of the queue arn
// (arn:<partition>:sqs:<region>:<account>:<name>). The client's error is
// wrapped, so a queue that does not exist can be told with errors.As
// (*types.QueueDoesNotExist) or its API error code.
func Lookup(ctx context.Context, c *sqs.Client, arn string) (string, error) {
	a, ok := esm.ParseARN(arn)
	if !ok || a.Service != "sqs" || a.Resource == "" || strings.Contains(a.Resource, ":") {
		return "", fmt.Errorf("sqs: not a queue ARN: %q", arn)
	}
	in := &sqs.GetQueueUrlInput{QueueName: aws.String(a.Resource)}
	if a.Account != "" {
		in.QueueOwnerAWSAccountId = aws.String(a.Account)
	}
	out, err := c.GetQueueUrl(ctx, in)
	if err != nil {
		return "", fmt.Errorf("sqs: resolve %s: %w", arn, err)
	}
	return aws.ToString(out.QueueUrl), nil
}
