package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esmd/esmd/checkpoint"
	"github.com/esmd/esmd/destination"
	"github.com/esmd/esmd/dispatcher"
	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/awsconfig"
	"github.com/esmd/esmd/internal/secrets"
	"github.com/esmd/esmd/pipeline"
)

// SourceEnv is what a source's Opener may use.
type SourceEnv struct {
	// AWS is the AWS SDK configuration esmd runs with.
	AWS aws.Config
	// Secrets resolves SourceAccessConfigurations secret ARNs
	// (--secrets-file, then AWS Secrets Manager).
	Secrets *secrets.Resolver
	// Flags holds the values of the flags sources added (sourceFlags).
	Flags map[string][]string
	// Log is esmd's logger.
	Log *slog.Logger
	// Store is serve's embedded store, where stream sources keep their
	// checkpoints (Position / SetPosition per mapping and lane).
	Store *checkpoint.Store
}

// Opener starts the poller of one mapping.
type Opener func(ctx context.Context, env *SourceEnv, m *esm.Mapping) (pipeline.Poller, error)

// kafkaProducer makes the Kafka client of a kafka:// OnFailure destination,
// in the mapping's own cluster (set by the Kafka source's file).
var kafkaProducer func(ctx context.Context, env *SourceEnv, m *esm.Mapping) (*kgo.Client, error)

// sourceRunners lets a source wrap the pipeline Runner of its mappings,
// for what only the source knows how to do, such as the create-time check
// that the queue exists (esm.SourceChecker).
var sourceRunners = map[esm.Source]func(r *pipeline.Runner, env *SourceEnv) (esm.Runner, error){}

// sourcePollers lists the sources this build of esmd can read. A source
// package adds itself here when it lands; a mapping whose source is not
// listed is kept and reports that it has no poller.
var sourcePollers = map[esm.Source]Opener{}

// dataPlane returns the engine options that run every source esmd has a
// poller for, through one Invoker and one set of destination clients, and a
// function that releases them.
func dataPlane(ctx context.Context, c *common, log *slog.Logger, store *checkpoint.Store, metrics *pipeline.Metrics) ([]esm.Option, func(), error) {
	if len(sourcePollers) == 0 {
		return nil, func() {}, nil
	}
	cfg, err := awsconfig.Load(ctx, c.region, c.lambdaEndpoint != "")
	if err != nil {
		return nil, nil, err
	}
	mode, err := dispatcher.ParseMode(c.invokeMode)
	if err != nil {
		return nil, nil, err
	}
	// The direct path signs with the SDK's own SigV4 signer, credentials and
	// resolved endpoint but skips the client's middleware stack: it halves
	// the per-invoke cost and keeps the body of a crashed RIE runtime's 502.
	// --invoke-path sdk goes through the SDK client instead.
	iopts := []dispatcher.Option{dispatcher.WithMode(mode), dispatcher.WithDirectHTTP(c.invokePath == "direct")}
	if c.lambdaEndpoint != "" {
		iopts = append(iopts, dispatcher.WithEndpoint(c.lambdaEndpoint))
	}
	inv, err := dispatcher.NewLambdaInvoker(cfg, iopts...)
	if err != nil {
		return nil, nil, fmt.Errorf("invoker: %w", err)
	}
	clients := destination.Clients{
		SQS: sqs.NewFromConfig(cfg),
		SNS: sns.NewFromConfig(cfg),
		// Path-style addressing works with AWS and with every S3 emulator.
		S3: s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true }),
	}
	sec, err := secrets.Load(c.secretsFile)
	if err != nil {
		return nil, nil, err
	}
	env := &SourceEnv{AWS: cfg, Secrets: sec.WithSecretsManager(cfg), Flags: map[string][]string{}, Log: log, Store: store}
	for name, v := range c.source {
		env.Flags[name] = *v
	}
	// One producer per Kafka mapping with a kafka:// destination, kept
	// across pipeline restarts and closed with the data plane.
	var mu sync.Mutex
	producers := map[string]*kgo.Client{}
	dest := func(d string, m *esm.Mapping) (destination.Sender, error) {
		cl := clients
		if strings.HasPrefix(d, "kafka://") && kafkaProducer != nil && m.Source.IsKafka() {
			mu.Lock()
			defer mu.Unlock()
			p := producers[m.UUID]
			if p == nil {
				if p, err = kafkaProducer(ctx, env, m); err != nil {
					return nil, err
				}
				producers[m.UUID] = p
			}
			cl.Kafka = p
		}
		return destination.New(d, m.UUID, cl)
	}
	release := func() {
		inv.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, p := range producers {
			p.Close()
		}
	}
	var opts []esm.Option
	for src, open := range sourcePollers {
		open := open
		pr := &pipeline.Runner{
			Open:        func(ctx context.Context, m *esm.Mapping) (pipeline.Poller, error) { return open(ctx, env, m) },
			Invoker:     inv,
			Destination: dest,
			Log:         log,
			Metrics:     metrics,
		}
		var r esm.Runner = pr
		if wrap, ok := sourceRunners[src]; ok {
			if r, err = wrap(pr, env); err != nil {
				release()
				return nil, nil, err
			}
		}
		opts = append(opts, esm.WithRunner(src, r))
	}
	return opts, release, nil
}
