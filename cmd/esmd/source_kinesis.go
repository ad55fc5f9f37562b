package main

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/esmd/esmd/checkpoint"
	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/pipeline"
	"github.com/esmd/esmd/pollers/kinesis"
)

func init() {
	sourcePollers[esm.SourceKinesis] = openKinesis
	sourceRunners[esm.SourceKinesis] = kinesisRunner
	sourceFlags = append(sourceFlags,
		struct{ name, usage string }{"kinesis-checkpoint-dir", "directory of the Kinesis checkpoint store (until serve hands sources its own store); without it Kinesis checkpoints live in memory only"},
		struct{ name, usage string }{"kinesis-invoke-identity-arn", "invokeIdentityArn of Kinesis events (the function's execution role ARN); empty by default"},
	)
}

// kinesisStores are the checkpoint stores opened for --kinesis-checkpoint-dir,
// by directory, kept open for the life of the process (pipelines restart).
var (
	kinesisStoresMu sync.Mutex
	kinesisStores   = map[string]*checkpoint.Store{}
	kinesisMemory   = &memPositions{m: map[string]string{}}
)

// kinesisPositions returns where Kinesis checkpoints go.
// TODO(issue 6): SourceEnv should carry serve's checkpoint.Store; then this
// flag goes away.
func kinesisPositions(env *SourceEnv) (kinesis.Positions, error) {
	dirs := env.Flags["kinesis-checkpoint-dir"]
	if len(dirs) == 0 {
		return kinesisMemory, nil
	}
	dir := dirs[len(dirs)-1]
	kinesisStoresMu.Lock()
	defer kinesisStoresMu.Unlock()
	if s := kinesisStores[dir]; s != nil {
		return s, nil
	}
	s, err := checkpoint.Open(dir)
	if err != nil {
		return nil, err
	}
	kinesisStores[dir] = s
	return s, nil
}

// openKinesis starts the poller of a Kinesis mapping. The stream's
// endpoint comes from the SDK configuration (AWS_ENDPOINT_URL_KINESIS,
// AWS_ENDPOINT_URL).
func openKinesis(ctx context.Context, env *SourceEnv, m *esm.Mapping) (pipeline.Poller, error) {
	if m.Config.EventSourceArn == nil {
		return nil, fmt.Errorf("kinesis: mapping %s has no EventSourceArn", m.UUID)
	}
	pos, err := kinesisPositions(env)
	if err != nil {
		return nil, err
	}
	c := kinesis.Config{StreamARN: *m.Config.EventSourceArn, Mapping: m.UUID, Positions: pos, Log: env.Log}
	if m.Config.StartingPosition != nil {
		c.StartingPosition = *m.Config.StartingPosition
	}
	if ts := m.Config.StartingPositionTimestamp; ts != nil {
		sec, frac := math.Modf(*ts)
		c.Timestamp = time.Unix(int64(sec), int64(frac*1e9))
	}
	if v := env.Flags["kinesis-invoke-identity-arn"]; len(v) > 0 {
		c.InvokeIdentityArn = v[len(v)-1]
	}
	return kinesis.Open(ctx, env.AWS, c)
}

// kinesisRunner adds the create-time stream check AWS makes ("Stream not
// found: <arn>") to the pipeline Runner dataPlane builds for Kinesis.
func kinesisRunner(r *pipeline.Runner, env *SourceEnv) (esm.Runner, error) {
	return &kinesis.Runner{Runner: r, AWS: env.AWS}, nil
}

// memPositions keeps checkpoints in memory (no --kinesis-checkpoint-dir).
type memPositions struct {
	mu sync.Mutex
	m  map[string]string
}

func (p *memPositions) Position(_ context.Context, mapping, lane string) (string, bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	v, ok := p.m[mapping+"\x00"+lane]
	return v, ok, nil
}

func (p *memPositions) SetPosition(_ context.Context, mapping, lane, pos string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.m[mapping+"\x00"+lane] = pos
	return nil
}
