package sqs

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/filter"
	"github.com/esmd/esmd/payload"
	"github.com/esmd/esmd/source"
)

// Descriptor describes SQS to the pipeline: Records events, a queue source
// (deleted when done, back after the visibility timeout when failed),
// BatchSize 10 with no window by default, records dealt to lanes by the
// batcher (a FIFO message group keeps its lane while any of its messages
// is held), and the create-time
// NonExistentQueue check. The queue's endpoint comes from the SDK
// configuration (AWS_ENDPOINT_URL_SQS, AWS_ENDPOINT_URL).
func Descriptor() *source.Descriptor {
	return &source.Descriptor{
		Source:   esm.SourceSQS,
		Delivery: source.Queue,
		Envelope: func(m *esm.Mapping) payload.Envelope { return payload.Records(aws.ToString(m.Config.EventSourceArn)) },
		Filter:   filter.SourceSQS,
		Batching: source.Batching{BatchSize: 10, Deal: true},
		Oversize: source.OversizeRedeliver,
		Check: func(ctx context.Context, env *source.Env, cfg *esm.Config) error {
			return (&Checker{AWS: env.AWS, Log: env.Log}).CheckSource(ctx, esm.SourceSQS, cfg)
		},
		Open: func(ctx context.Context, env *source.Env, m *esm.Mapping) (source.Poller, error) {
			return Open(ctx, env.AWS, m, WithLogger(env.Log))
		},
	}
}
