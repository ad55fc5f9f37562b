package batcher

import (
	"context"
	"math/rand/v2"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/esmd/esmd/payload"
	"github.com/esmd/esmd/source"
)

// TestRandomized drives a Batcher with random adds, Done orders and time
// steps and checks the invariants on every batch: each record is delivered
// once, in order within its sub-lane; one batch in flight per sub-lane; a
// batch is within BatchSize and the payload limit with an exact Size; and
// a batch that is not full was released no earlier than its batching window
// allows.
func TestRandomized(t *testing.T) {
	for seed := range uint64(20) {
		for _, start := range []WindowStart{AfterInvoke, FirstRecord} {
			t.Run(strconv.Itoa(int(seed))+"/"+start.String(), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) { randomRun(t, seed, start) })
			})
		}
	}
}

func randomRun(t *testing.T, seed uint64, start WindowStart) {
	rng := rand.New(rand.NewPCG(seed, 42))
	const limit = 2000
	pol := Policy{
		BatchSize:             1 + rng.IntN(8),
		Window:                time.Duration(rng.IntN(3)) * time.Second,
		WindowStart:           start,
		ParallelizationFactor: 1 + rng.IntN(3),
	}
	b := newB(t, pol, sqsEnv, WithMaxPayloadSize(limit))
	type subKey struct {
		lane string
		sub  int
	}
	type info struct {
		added time.Time
		sub   subKey
		seq   int
		size  int
	}
	var (
		recs     = map[string]info{}
		lastSeq  = map[subKey]int{}
		lastDone = map[subKey]time.Time{}
		inflight = map[subKey]*Batch{}
		pending  []*Batch
		nextID   int
		seqs     = map[subKey]int{}
	)
	deliver := func(bt *Batch) {
		k := subKey{bt.Lane, bt.SubLane}
		if inflight[k] != nil {
			t.Fatalf("two batches in flight on %v", k)
		}
		inflight[k] = bt
		pending = append(pending, bt)
		if len(bt.Records) == 0 || len(bt.Records) > pol.BatchSize {
			t.Fatalf("batch of %d records", len(bt.Records))
		}
		ev := checkEvent(t, bt)
		first := recs[bt.Records[0].ID].added
		if bt.Oversize != (len(ev) > limit) || bt.Oversize && len(bt.Records) != 1 {
			t.Fatalf("oversize=%v for %d bytes, %d records", bt.Oversize, len(ev), len(bt.Records))
		}
		for _, r := range bt.Records {
			in, ok := recs[r.ID]
			if !ok {
				t.Fatalf("record %s delivered twice or unknown", r.ID)
			}
			delete(recs, r.ID)
			if in.sub != k || in.seq != lastSeq[k]+1 {
				t.Fatalf("record %s (seq %d on %v) in batch of %v after seq %d", r.ID, in.seq, in.sub, k, lastSeq[k])
			}
			lastSeq[k] = in.seq
		}
		// Not full: no record left over that would have fitted, so the
		// window must have expired.
		if !bt.Oversize && len(bt.Records) < pol.BatchSize {
			nb := payload.NewBuilder(sqsEnv)
			for _, r := range bt.Records {
				nb.Add(r.Group, r.Data)
			}
			next := -1
			for _, in := range recs {
				if in.sub == k && in.seq == lastSeq[k]+1 {
					next = in.size
				}
			}
			if next < 0 || nb.SizeWith("", next) <= limit {
				open := first
				if start == AfterInvoke && lastDone[k].After(open) {
					open = lastDone[k]
				}
				if time.Now().Before(open.Add(pol.Window)) {
					t.Fatalf("batch %s released at %v, before its window (opened %v, %v)", ids(bt), time.Now(), open, pol.Window)
				}
			}
		}
	}
	for step := 0; step < 300; step++ {
		switch rng.IntN(4) {
		case 0: // add a poll result
			n := 1 + rng.IntN(6)
			var batch []source.Record
			for range n {
				lane := "l" + strconv.Itoa(rng.IntN(3))
				key := "k" + strconv.Itoa(rng.IntN(5))
				size := 2 + rng.IntN(700)
				if rng.IntN(30) == 0 {
					size = limit // never fits
				}
				id := strconv.Itoa(nextID)
				nextID++
				k := subKey{lane, SubLane(key, pol.ParallelizationFactor)}
				seqs[k]++
				recs[id] = info{added: time.Now(), sub: k, seq: seqs[k], size: size}
				r := source.Record{Lane: lane, Key: key, ID: id, Data: jsonString(size)}
				batch = append(batch, r)
			}
			mustAdd(t, b, batch...)
		case 1: // done with a random batch
			if len(pending) > 0 {
				i := rng.IntN(len(pending))
				bt := pending[i]
				pending = append(pending[:i], pending[i+1:]...)
				k := subKey{bt.Lane, bt.SubLane}
				inflight[k] = nil
				mustDone(t, b, bt, "")
				lastDone[k] = time.Now()
			}
		case 2: // time passes
			time.Sleep(time.Duration(rng.IntN(1500)) * time.Millisecond)
		case 3: // take everything that is ready
			for bt := tryNext(b); bt != nil; bt = tryNext(b) {
				deliver(bt)
			}
		}
	}
	// Drain: finish everything, waiting for windows.
	for len(recs) > 0 {
		for _, bt := range pending {
			k := subKey{bt.Lane, bt.SubLane}
			inflight[k] = nil
			mustDone(t, b, bt, "")
			lastDone[k] = time.Now()
		}
		pending = pending[:0]
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		bt, err := b.Next(ctx)
		cancel()
		if err != nil {
			t.Fatalf("%d records never released: %v", len(recs), err)
		}
		deliver(bt)
	}
}
