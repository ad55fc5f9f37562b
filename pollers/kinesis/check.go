package kinesis

import (
	"context"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/pipeline"
)

// StreamNotFoundMessage is the message of the InvalidParameterValueException
// AWS answers CreateEventSourceMapping with when the stream does not exist
// (test_esm_with_not_existing_kinesis_stream): "Stream not found: " and the
// EventSourceArn.
const StreamNotFoundMessage = "Stream not found: "

// Runner is the pipeline Runner of Kinesis mappings with the check AWS
// makes when a mapping is created: it implements esm.SourceChecker.
type Runner struct {
	*pipeline.Runner
	// AWS is the SDK configuration the stream is looked up with.
	AWS aws.Config
}

// CheckSource implements esm.SourceChecker: a stream that does not exist
// refuses the mapping with AWS's 400 and message. Other failures do not
// refuse it: the poller retries them.
func (r *Runner) CheckSource(ctx context.Context, src esm.Source, cfg *esm.Config) error {
	if src != esm.SourceKinesis || cfg.EventSourceArn == nil {
		return nil
	}
	arn := *cfg.EventSourceArn
	name, region, err := StreamName(arn)
	if err != nil {
		return nil // the engine validated the ARN's shape already
	}
	c := r.AWS.Copy()
	if region != "" {
		c.Region = region
	}
	_, err = awskinesis.NewFromConfig(c).DescribeStreamSummary(ctx, &awskinesis.DescribeStreamSummaryInput{StreamName: aws.String(name)})
	if isNotFound(err) {
		return &esm.Error{Type: esm.ErrTypeInvalidParameterValue, Status: http.StatusBadRequest, Message: StreamNotFoundMessage + arn}
	}
	if err != nil && r.Log != nil {
		r.Log.Warn("kinesis: could not check that the stream exists; the mapping is accepted", "stream", arn, "err", err)
	}
	return nil
}
