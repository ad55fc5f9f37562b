package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/esmd/esmd/destination"
	"github.com/esmd/esmd/dispatcher"
	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/awsconfig"
	"github.com/esmd/esmd/internal/secrets"
	"github.com/esmd/esmd/internal/workerid"
	"github.com/esmd/esmd/pipeline"
	"github.com/esmd/esmd/pollers/activemq"
	"github.com/esmd/esmd/pollers/documentdb"
	"github.com/esmd/esmd/pollers/dynamodbstreams"
	"github.com/esmd/esmd/pollers/kafka"
	"github.com/esmd/esmd/pollers/kinesis"
	"github.com/esmd/esmd/pollers/rabbitmq"
	"github.com/esmd/esmd/pollers/sqs"
	"github.com/esmd/esmd/source"
)

// sources lists every source this build of esmd reads: one descriptor per
// source, owned by the source's package. Adding a source is one line here.
// A mapping whose source is not listed is kept and reports that it has no
// poller.
func sources() []*source.Descriptor {
	return []*source.Descriptor{
		sqs.Descriptor(),
		kinesis.Descriptor(),
		dynamodbstreams.Descriptor(),
		kafka.MSKDescriptor(),
		kafka.SelfManagedDescriptor(),
		activemq.Descriptor(), // before rabbitmq: it claims the "mq" mappings of ActiveMQ brokers
		rabbitmq.Descriptor(),
		documentdb.Descriptor(),
	}
}

// dataPlane returns the engine options that run every source in c.sources
// through one Invoker and one set of destination clients, and a function
// that releases them.
func dataPlane(ctx context.Context, c *common, log *slog.Logger, store source.Checkpoints, metrics *pipeline.Metrics) ([]esm.Option, func(), error) {
	if len(c.sources) == 0 {
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
	iopts := []dispatcher.Option{dispatcher.WithMode(mode), dispatcher.WithDirectHTTP(c.invokePath == "direct"),
		dispatcher.WithFunctionNames(c.invokeBy == "name")}
	if c.lambdaEndpoint != "" {
		iopts = append(iopts, dispatcher.WithEndpoint(c.lambdaEndpoint))
	}
	inv, err := dispatcher.NewLambdaInvoker(cfg, iopts...)
	if err != nil {
		return nil, nil, fmt.Errorf("invoker: %w", err)
	}
	// Path-style S3 addressing works with AWS and with every S3 emulator.
	clients := destination.NewClients(cfg, true)
	sec, err := secrets.Load(c.secretsFile, log)
	if err != nil {
		inv.Close()
		return nil, nil, err
	}
	if c.requireAllowed {
		sec.RequireRestriction()
	}
	env := &source.Env{AWS: cfg, Secrets: sec.WithSecretsManager(cfg), Flags: map[string][]string{}, Log: log, Store: store,
		LeaseTTL: c.leaseTTL}
	// A stable identity lets a worker that restarts take its place back at
	// once where brokers allow it (Kafka static membership), and its stream
	// shards' leases before they expire.
	env.Worker = c.workerID
	if env.Worker == "" {
		if env.Worker, err = workerid.Load(c.dataDir); err != nil {
			log.Warn("no worker id: Kafka mappings join their groups as dynamic members, and a restart waits for the group's session timeout", "err", err)
			if c.store != "" {
				// Leases need a name: this process's.
				env.Worker = defaultWorkerID()
			}
		}
	}
	metrics.Worker = env.Worker
	for name, v := range c.source {
		env.Flags[name] = *v
	}
	// Descriptors of one Source (Claims) share one Runner, a pipeline.Mux.
	bySource := map[esm.Source]pipeline.Mux{}
	var order []esm.Source
	for _, d := range c.sources {
		if err := d.Validate(); err != nil {
			inv.Close()
			return nil, nil, err
		}
		dest := func(dst string, m *esm.Mapping) (destination.Sender, error) {
			if d.Destination != nil {
				if s, ok, err := d.Destination(ctx, env, m, dst); ok {
					return s, err
				}
			}
			return destination.New(dst, m.UUID, clients)
		}
		r := &pipeline.Runner{Source: d, Env: env, Invoker: inv, Destination: dest, Log: log, Metrics: metrics, DrainTimeout: c.drainTimeout}
		if bySource[d.Source] == nil {
			order = append(order, d.Source)
		}
		bySource[d.Source] = append(bySource[d.Source], r)
	}
	var opts []esm.Option
	for _, src := range order {
		if rs := bySource[src]; len(rs) == 1 {
			opts = append(opts, esm.WithRunner(src, rs[0]))
		} else {
			opts = append(opts, esm.WithRunner(src, rs))
		}
	}
	return opts, inv.Close, nil
}
