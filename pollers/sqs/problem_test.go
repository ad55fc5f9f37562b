package sqs_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/pollers/pollertest"
	"github.com/esmd/esmd/pollers/sqs"
)

// TestConnectionErrorsLookAlike: whatever listens (or not) at the SQS
// endpoint, the error the mapping shows is AWS's one phrase, without the
// endpoint.
func TestConnectionErrorsLookAlike(t *testing.T) {
	t.Parallel()
	m := &esm.Mapping{UUID: "u", Config: esm.Config{EventSourceArn: aws.String("arn:aws:sqs:us-east-1:000000000000:q")}}
	pollertest.Unreachable(t, []string{"http://"}, 5*time.Second, func(ctx context.Context, scheme, addr string) (io.Closer, error) {
		cfg := testenv.AWSConfig(scheme + addr)
		cfg.RetryMaxAttempts = 1
		return sqs.Open(ctx, cfg, m)
	})
}
