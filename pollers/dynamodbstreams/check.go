package dynamodbstreams

import (
	"context"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddbs "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/pipeline"
)

// StreamNotFoundMessage is the message of the InvalidParameterValueException
// AWS answers CreateEventSourceMapping with when the stream does not exist
// (test_esm_with_not_existing_dynamodb_stream): "Stream not found: " and
// the EventSourceArn.
const StreamNotFoundMessage = "Stream not found: "

// Runner is the pipeline Runner of DynamoDB Streams mappings with the
// check AWS makes when a mapping is created: it implements
// esm.SourceChecker.
type Runner struct {
	*pipeline.Runner
	// AWS is the SDK configuration the stream is looked up with.
	AWS aws.Config
}

// CheckSource implements esm.SourceChecker: a stream that does not exist
// refuses the mapping with AWS's 400 and message. Other failures do not
// refuse it: the poller retries them.
func (r *Runner) CheckSource(ctx context.Context, src esm.Source, cfg *esm.Config) error {
	if src != esm.SourceDynamoDB || cfg.EventSourceArn == nil {
		return nil
	}
	arn := *cfg.EventSourceArn
	if _, _, err := ParseARN(arn); err != nil {
		return nil // the engine validated the ARN's shape already
	}
	_, err := NewClient(r.AWS, arn).DescribeStream(ctx, &ddbs.DescribeStreamInput{StreamArn: aws.String(arn), Limit: aws.Int32(1)})
	if IsStreamNotFound(err) {
		return &esm.Error{Type: esm.ErrTypeInvalidParameterValue, Status: http.StatusBadRequest, Message: StreamNotFoundMessage + arn}
	}
	if err != nil && r.Log != nil {
		r.Log.Warn("dynamodbstreams: could not check that the stream exists; the mapping is accepted", "stream", arn, "err", err)
	}
	return nil
}
