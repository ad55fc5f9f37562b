package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/pollers/activemq"
	"github.com/esmd/esmd/pollers/documentdb"
	"github.com/esmd/esmd/pollers/dynamodbstreams"
	"github.com/esmd/esmd/pollers/kafka"
	"github.com/esmd/esmd/pollers/kinesis"
	"github.com/esmd/esmd/pollers/rabbitmq"
	"github.com/esmd/esmd/pollers/sqs"
	"github.com/esmd/esmd/source"
)

// Target is one source as the bench drives it.
type Target interface {
	// Prepare makes a fresh place (topic, queue, stream, collection) for
	// the records of the round named round, so rounds do not share
	// records.
	Prepare(ctx context.Context, round string) error
	// Produce writes the records' bodies to the place Prepare made and
	// returns once the source accepted every one of them.
	Produce(ctx context.Context, bodies [][]byte) error
	// Mapping is the CreateEventSourceMapping request of the current
	// round, without batching or filter (the bench adds them).
	Mapping() *esm.Config
	// Raw is what the raw loop of the current round needs to read the
	// same records (RawSpec.Source and the batching are added by the
	// bench).
	Raw() RawSpec
	// Filter is the pattern that keeps records whose "kind" is "match".
	Filter() string
	// Close releases the target's clients and in-process servers.
	Close()
}

// newTarget returns the target of cfg.Source.
func newTarget(ctx context.Context, cfg *Config) (Target, error) {
	switch cfg.Source {
	case "kafka":
		return newKafka(ctx, cfg)
	case "sqs":
		return newSQS(ctx, cfg)
	case "kinesis":
		return newKinesis(ctx, cfg)
	case "rabbitmq":
		return newRabbitMQ(ctx, cfg)
	case "activemq":
		return newActiveMQ(ctx, cfg)
	case "dynamodb":
		return newDynamoDB(ctx, cfg)
	case "documentdb":
		return newDocumentDB(ctx, cfg)
	}
	return nil, fmt.Errorf("bench: no source %s", cfg.Source)
}

func ptr[T any](v T) *T { return &v }

// enver is a Target whose children need environment variables (the
// endpoint of an in-process server).
type enver interface {
	ChildEnv() []string
}

// childEnvOf is the extra environment of t's children.
func childEnvOf(t Target) []string {
	if e, ok := t.(enver); ok {
		return e.ChildEnv()
	}
	return nil
}

// descriptors are the sources' descriptors, for their default batching.
var descriptors = map[string]func() *source.Descriptor{
	"kafka": kafka.SelfManagedDescriptor, "sqs": sqs.Descriptor, "kinesis": kinesis.Descriptor,
	"dynamodb": dynamodbstreams.Descriptor, "rabbitmq": rabbitmq.Descriptor, "activemq": activemq.Descriptor,
	"documentdb": documentdb.Descriptor,
}

// defaultWindow is the source's default MaximumBatchingWindowInSeconds
// (its descriptor's), which a raw loop uses when esmd runs with it.
func defaultWindow(src string) time.Duration {
	if d := descriptors[src]; d != nil {
		return d().Batching.Window
	}
	return 0
}
