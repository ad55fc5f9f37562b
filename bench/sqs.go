package bench

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/awsconfig"
)

// sqsTarget is an SQS queue per round, on the SQS the SDK's environment
// names (AWS_ENDPOINT_URL_SQS, AWS_ENDPOINT_URL, else AWS).
type sqsTarget struct {
	cl       *sqs.Client
	url, arn string
}

func newSQS(ctx context.Context, _ *Config) (*sqsTarget, error) {
	cfg, err := awsconfig.Load(ctx, region(), false)
	if err != nil {
		return nil, err
	}
	return &sqsTarget{cl: sqs.NewFromConfig(cfg)}, nil
}

func (t *sqsTarget) Prepare(ctx context.Context, round string) error {
	out, err := t.cl.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("esmd-bench-" + round)})
	if err != nil {
		return fmt.Errorf("create queue: %w", err)
	}
	t.url = aws.ToString(out.QueueUrl)
	attrs, err := t.cl.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: out.QueueUrl,
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		return fmt.Errorf("queue ARN: %w", err)
	}
	t.arn = attrs.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]
	return nil
}

// Produce sends the bodies in batches of 10, 16 batches at a time.
func (t *sqsTarget) Produce(ctx context.Context, bodies [][]byte) error {
	return inParallel(ctx, len(bodies), 10, 16, func(ctx context.Context, from, to int) error {
		in := &sqs.SendMessageBatchInput{QueueUrl: &t.url}
		for i := from; i < to; i++ {
			in.Entries = append(in.Entries, sqstypes.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(string(bodies[i]))})
		}
		out, err := t.cl.SendMessageBatch(ctx, in)
		if err != nil {
			return err
		}
		if len(out.Failed) > 0 {
			return fmt.Errorf("SendMessageBatch: %d failed: %s", len(out.Failed), aws.ToString(out.Failed[0].Message))
		}
		return nil
	})
}

func (t *sqsTarget) Mapping() *esm.Config { return &esm.Config{EventSourceArn: ptr(t.arn)} }

func (t *sqsTarget) Raw() RawSpec { return RawSpec{Name: t.url, Arn: t.arn} }

func (t *sqsTarget) Filter() string { return `{"body":{"kind":["match"]}}` }

func (t *sqsTarget) Close() {}

// inParallel calls f on [from, to) chunks of n items of at most size,
// workers at a time, and returns the first error.
func inParallel(ctx context.Context, n, size, workers int, f func(ctx context.Context, from, to int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range min(workers, (n+size-1)/size) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for from := range next {
				if err := f(ctx, from, min(from+size, n)); err != nil {
					once.Do(func() { first = err; cancel() })
				}
			}
		}()
	}
feed:
	for from := 0; from < n; from += size {
		select {
		case next <- from:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}
