package sqs_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/pollers/sqs"
	"github.com/esmd/esmd/source"
)

// TestConnectionErrorsLookAlike: whatever listens (or not) at the SQS
// endpoint, the error the mapping shows is AWS's one phrase, without the
// endpoint; the causes go to the log.
func TestConnectionErrorsLookAlike(t *testing.T) {
	t.Parallel()
	for name, addr := range testenv.Unreachable(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg := testenv.AWSConfig("http://" + addr)
			cfg.RetryMaxAttempts = 1
			m := &esm.Mapping{UUID: "u", Config: esm.Config{EventSourceArn: aws.String("arn:aws:sqs:us-east-1:000000000000:q")}}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			p, err := sqs.Open(ctx, cfg, m)
			if err == nil {
				p.Close()
				t.Fatal("opened")
			}
			shown, detail := source.Shown(err)
			if shown.Error() != source.PhraseConnection || detail == nil {
				t.Errorf("shown %q (detail %v), want %q", shown, detail, source.PhraseConnection)
			}
		})
	}
}
