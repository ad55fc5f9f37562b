package main

import (
	"context"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/pipeline"
	"github.com/esmd/esmd/pollers/sqs"
)

func init() {
	sourcePollers[esm.SourceSQS] = openSQS
	sourceRunners[esm.SourceSQS] = sqsRunner
}

// openSQS starts the poller of an SQS mapping. The queue's endpoint comes
// from the SDK configuration (AWS_ENDPOINT_URL_SQS, AWS_ENDPOINT_URL).
func openSQS(ctx context.Context, env *SourceEnv, m *esm.Mapping) (pipeline.Poller, error) {
	p, err := sqs.Open(ctx, env.AWS, m, sqs.WithLogger(env.Log))
	if err != nil {
		return nil, err
	}
	return p, nil
}

// sqsRunner adds the create-time queue check AWS makes (a missing queue is
// refused with its NonExistentQueue message) to the pipeline Runner
// dataPlane builds for SQS.
func sqsRunner(r *pipeline.Runner, env *SourceEnv) (esm.Runner, error) {
	return &sqs.Runner{Runner: r, AWS: env.AWS}, nil
}
