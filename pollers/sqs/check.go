package sqs

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/esmd/esmd/esm"
)

// NonExistentQueueMessage is the message of the InvalidParameterValueException
// AWS answers CreateEventSourceMapping with when the queue does not exist
// (recorded in test_esm_with_not_existing_sqs_queue).
const NonExistentQueueMessage = "Error occurred while ReceiveMessage. SQS Error Code: AWS.SimpleQueueService.NonExistentQueue. SQS Error Message: The specified queue does not exist."

// IsNonExistentQueue reports whether err is SQS's "queue does not exist"
// (QueueDoesNotExist in the JSON protocol, AWS.SimpleQueueService.NonExistentQueue
// in the query protocol and in what emulators answer).
func IsNonExistentQueue(err error) bool {
	var qdne *types.QueueDoesNotExist
	if errors.As(err, &qdne) {
		return true
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist":
			return true
		}
	}
	return false
}

// Checker is the check AWS makes when an SQS mapping is created.
type Checker struct {
	// Log receives the warnings of checks that do not refuse a mapping.
	Log *slog.Logger
	// AWS is the SDK configuration the queue is looked up with (the same
	// the pollers use).
	AWS aws.Config
	// FunctionTimeout, when set, returns the timeout of the mapping's
	// function (Lambda GetFunctionConfiguration), so that CheckSource can
	// warn when the queue's visibility timeout is shorter: messages would
	// then reappear while the function still runs. AWS refuses such a
	// mapping (spec SQS-12) with a message that is not recorded; esmd
	// extends visibility while an invocation runs, so it only warns.
	FunctionTimeout func(ctx context.Context, function string) (time.Duration, error)
}

// CheckSource implements esm.SourceChecker: a queue that does not exist
// refuses the mapping with AWS's 400 and message. Other failures (SQS
// unreachable, throttled) do not refuse it: the poller retries them.
func (r *Checker) CheckSource(ctx context.Context, src esm.Source, cfg *esm.Config) error {
	if src != esm.SourceSQS || cfg.EventSourceArn == nil {
		return nil
	}
	q, err := ParseARN(*cfg.EventSourceArn)
	if err != nil {
		return nil // the engine validated the ARN's shape already
	}
	client := awssqs.NewFromConfig(r.AWS)
	url, err := QueueURL(ctx, client, q)
	if IsNonExistentQueue(err) {
		return &esm.Error{Type: esm.ErrTypeInvalidParameterValue, Status: http.StatusBadRequest, Message: NonExistentQueueMessage}
	}
	if err != nil || r.FunctionTimeout == nil || cfg.FunctionName == nil {
		return nil
	}
	ft, err := r.FunctionTimeout(ctx, *cfg.FunctionName)
	if err != nil {
		return nil
	}
	attrs, err := client.GetQueueAttributes(ctx, &awssqs.GetQueueAttributesInput{QueueUrl: &url,
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameVisibilityTimeout}})
	if err != nil {
		return nil
	}
	vt, err := strconv.Atoi(attrs.Attributes[string(types.QueueAttributeNameVisibilityTimeout)])
	if err == nil && time.Duration(vt)*time.Second < ft && r.Log != nil {
		r.Log.Warn("the queue's visibility timeout is shorter than the function's timeout; AWS refuses this mapping, esmd extends visibility while invocations run",
			"queue", q.ARN, "visibilityTimeout", time.Duration(vt)*time.Second, "function", *cfg.FunctionName, "functionTimeout", ft)
	}
	return nil
}
