package bench

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/esmd/esmd/payload"
)

// eachShard runs read for every shard, each in its own goroutine, beside
// a checkpointer that writes the shards' positions to a file every 100 ms,
// until ctx is done or a reader fails; it returns the first failure. A
// reader that ends without error (a closed shard) leaves the others
// running.
func eachShard(ctx context.Context, shards []string, read func(ctx context.Context, shard string, ck *checkpoints) error) error {
	dir, err := os.MkdirTemp("", "esmd-bench-raw-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ck := &checkpoints{pos: map[string]string{}}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var checkpointer sync.WaitGroup
	checkpointer.Add(1)
	go func() {
		defer checkpointer.Done()
		ck.run(ctx, filepath.Join(dir, "checkpoints.json"))
	}()
	var readers sync.WaitGroup
	var once sync.Once
	var first error
	for _, sh := range shards {
		readers.Add(1)
		go func() {
			defer readers.Done()
			if err := read(ctx, sh, ck); err != nil && ctx.Err() == nil {
				once.Do(func() { first = err; cancel() })
			}
		}()
	}
	readers.Wait()
	cancel()
	checkpointer.Wait()
	return first
}

// shardReader reads one shard of records R for readShard.
type shardReader[R any] struct {
	// get reads from iter: the records, the next iterator (nil at the end
	// of a closed shard).
	get func(ctx context.Context, iter *string) ([]R, *string, error)
	// encode appends record r's event record to dst; false leaves it out
	// (the filter).
	encode func(dst []byte, r *R) ([]byte, bool)
	// seq is r's sequence number, the shard's checkpoint after it.
	seq func(r *R) string
}

// readShard reads a shard from iter until ctx is done or it ends: each
// read is invoked in events of up to BatchSize records, each followed by
// a checkpoint; a failed read is tried again (5 times, 500 ms apart:
// throttling and busy servers pass), an empty one waits kinesisIdle.
func readShard[R any](ctx context.Context, s *RawSpec, inv *rawInvoker, ck *checkpoints, shard string, iter *string, rd shardReader[R]) error {
	env := payload.StreamRecords(s.Arn)
	var ev []byte
	failures := 0
	for iter != nil && ctx.Err() == nil {
		recs, next, err := rd.get(ctx, iter)
		if err != nil {
			if failures++; failures > 5 || ctx.Err() != nil {
				return err
			}
			sleep(ctx, 500*time.Millisecond)
			continue
		}
		failures, iter = 0, next
		if len(recs) == 0 {
			sleep(ctx, kinesisIdle)
			continue
		}
		for len(recs) > 0 {
			k := min(s.BatchSize, len(recs))
			ev = append(ev[:0], env.Head...)
			n := 0
			for i := range recs[:k] {
				mark := len(ev)
				if n > 0 {
					ev = append(ev, ',')
				}
				var ok bool
				if ev, ok = rd.encode(ev, &recs[i]); ok {
					n++
				} else {
					ev = ev[:mark]
				}
			}
			ev = append(ev, env.Tail...)
			if n > 0 {
				if err := inv.Invoke(ctx, ev); err != nil {
					return err
				}
			}
			ck.set(shard, rd.seq(&recs[k-1]))
			recs = recs[k:]
		}
	}
	return ctx.Err()
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// checkpoints are the shards' positions, written to a file every 100 ms.
type checkpoints struct {
	mu    sync.Mutex
	pos   map[string]string
	dirty bool
}

func (c *checkpoints) set(shard, seq string) {
	c.mu.Lock()
	c.pos[shard], c.dirty = seq, true
	c.mu.Unlock()
}

func (c *checkpoints) run(ctx context.Context, file string) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			c.flush(file)
			return
		case <-tick.C:
			c.flush(file)
		}
	}
}

func (c *checkpoints) flush(file string) {
	c.mu.Lock()
	if !c.dirty {
		c.mu.Unlock()
		return
	}
	b, _ := json.Marshal(c.pos)
	c.dirty = false
	c.mu.Unlock()
	f, err := os.Create(file)
	if err != nil {
		return
	}
	_, _ = f.Write(b)
	_ = f.Sync()
	_ = f.Close()
}
