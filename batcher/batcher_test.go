package batcher

import (
	"context"
	"encoding/json"
	"errors"
	"hash/fnv"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/esmd/esmd/payload"
	"github.com/esmd/esmd/source"
)

func TestPolicyValidate(t *testing.T) {
	tests := []struct {
		name string
		p    Policy
		ok   bool
	}{
		{"sqs default", Policy{BatchSize: 10}, true},
		{"kafka default", Policy{BatchSize: 100, Window: 500 * time.Millisecond, WindowStart: FirstRecord}, true},
		{"max", Policy{BatchSize: 10000, Window: 300 * time.Second, ParallelizationFactor: 10, TumblingWindow: 900 * time.Second}, true},
		{"batch size 0", Policy{BatchSize: 0}, false},
		{"batch size 10001", Policy{BatchSize: 10001}, false},
		{"window negative", Policy{BatchSize: 1, Window: -1}, false},
		{"window 301s", Policy{BatchSize: 1, Window: 301 * time.Second}, false},
		{"pf 11", Policy{BatchSize: 1, ParallelizationFactor: 11}, false},
		{"tumbling 901s", Policy{BatchSize: 1, TumblingWindow: 901 * time.Second}, false},
		{"tumbling 1.5s", Policy{BatchSize: 1, TumblingWindow: 1500 * time.Millisecond}, false},
		{"window start", Policy{BatchSize: 1, WindowStart: 7}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
			_, err = New(tt.p, payload.StreamRecords(""))
			if (err == nil) != tt.ok {
				t.Fatalf("New() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestNewRejects(t *testing.T) {
	p := Policy{BatchSize: 10, TumblingWindow: time.Minute}
	if _, err := New(p, sqsEnv); err == nil {
		t.Error("tumbling window on SQS accepted")
	}
	if _, err := New(Policy{BatchSize: 1}, sqsEnv, WithWindowGrace(time.Second), WithWindowGrace(time.Second)); err == nil {
		t.Error("duplicate option accepted")
	}
	if _, err := New(Policy{BatchSize: 1}, sqsEnv, WithMaxPayloadSize(0)); err == nil {
		t.Error("max payload 0 accepted")
	}
}

// TestFlushBatchSize: BatchSize records are released at once, whatever the
// window; the rest waits for the window.
func TestFlushBatchSize(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newB(t, Policy{BatchSize: 3, Window: 10 * time.Second}, sqsEnv)
		for i := range 7 {
			mustAdd(t, b, rec("q", "", i, 10))
		}
		start := time.Now()
		for _, want := range []string{"0,1,2", "3,4,5"} {
			bt, err := nextIn(t, b, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if ids(bt) != want || time.Since(start) != 0 {
				t.Fatalf("got %s after %v, want %s at once", ids(bt), time.Since(start), want)
			}
			checkEvent(t, bt)
			mustDone(t, b, bt, "")
		}
		bt, err := nextIn(t, b, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if ids(bt) != "6" || time.Since(start) != 10*time.Second {
			t.Fatalf("got %s after %v, want 6 after the 10s window", ids(bt), time.Since(start))
		}
	})
}

// TestFlushWindow covers when the batching window starts for both
// behaviours: a record added while the lane's batch is in flight.
func TestFlushWindow(t *testing.T) {
	const w = 10 * time.Second
	tests := []struct {
		name   string
		start  WindowStart
		doneAt time.Duration // when the first batch is done
		want   time.Duration // when the second batch (record added at 11s) is released
	}{
		// AfterInvoke: the window opens at Done.
		{"after-invoke done early", AfterInvoke, 15 * time.Second, 25 * time.Second},
		{"after-invoke done late", AfterInvoke, 30 * time.Second, 40 * time.Second},
		// FirstRecord: the window opened when the record arrived (11s);
		// if it expired while in flight, release at Done.
		{"first-record done early", FirstRecord, 15 * time.Second, 21 * time.Second},
		{"first-record done late", FirstRecord, 30 * time.Second, 30 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := newB(t, Policy{BatchSize: 100, Window: w, WindowStart: tt.start}, sqsEnv)
				t0 := time.Now()
				mustAdd(t, b, rec("q", "", 1, 10))
				bt, err := nextIn(t, b, time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				if got := time.Since(t0); got != w {
					t.Fatalf("first batch after %v, want %v (window from the first record on an idle lane)", got, w)
				}
				time.Sleep(11*time.Second - time.Since(t0))
				mustAdd(t, b, rec("q", "", 2, 10))
				time.Sleep(tt.doneAt - time.Since(t0))
				if bt := tryNext(b); bt != nil {
					t.Fatalf("released %s while the lane was in flight", ids(bt))
				}
				mustDone(t, b, bt, "")
				bt, err = nextIn(t, b, time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				if got := time.Since(t0); ids(bt) != "2" || got != tt.want {
					t.Fatalf("second batch %s at %v, want 2 at %v", ids(bt), got, tt.want)
				}
			})
		})
	}
}

// TestWindowZero: with no window a poll result is one batch, released at
// once.
func TestWindowZero(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newB(t, Policy{BatchSize: 10}, sqsEnv)
		var recs []source.Record
		for i := range 4 {
			recs = append(recs, rec("q", "", i, 10))
		}
		mustAdd(t, b, recs...)
		bt, err := nextIn(t, b, time.Hour)
		if err != nil || ids(bt) != "0,1,2,3" {
			t.Fatalf("got %s, %v", ids(bt), err)
		}
	})
}

// TestPayloadCut pins the 6 MB rule on the encoded event: an SQS event of
// two records is {"Records":[ + r1 + , + r2 + ]} = 15 + len(r1) + len(r2).
func TestPayloadCut(t *testing.T) {
	const limit = payload.MaxPayloadSize
	if limit != 6291456 {
		t.Fatalf("MaxPayloadSize = %d", limit)
	}
	overhead := sqsEnv.Overhead()
	tests := []struct {
		name  string
		event int // size of the event of both records together
		split bool
	}{
		{"exactly 6 MB", limit, false},
		{"one byte over", limit + 1, true},
		{"one byte under", limit - 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newB(t, Policy{BatchSize: 10, Window: time.Minute}, sqsEnv)
			r1 := rec("q", "", 1, 1000)
			r2 := rec("q", "", 2, tt.event-overhead-1-1000)
			mustAdd(t, b, r1, r2)
			var got []string
			for {
				bt := tryNext(b)
				if bt == nil {
					break
				}
				if bt.Size > limit || bt.Oversize {
					t.Fatalf("batch %s of %d bytes (oversize %v)", ids(bt), bt.Size, bt.Oversize)
				}
				checkEvent(t, bt)
				got = append(got, ids(bt))
				mustDone(t, b, bt, "")
			}
			// A batch that is cut comes out at once, the rest waits for the
			// window; a batch that fits is not full and waits too.
			if tt.split {
				if len(got) != 1 || got[0] != "1" || b.Buffered("q") != 1 {
					t.Fatalf("released at once: %v, buffered %d; want [1] and 1", got, b.Buffered("q"))
				}
				return
			}
			if len(got) != 0 || b.Buffered("q") != 2 {
				t.Fatalf("released %v, buffered %d; want nothing before the window", got, b.Buffered("q"))
			}
		})
	}
}

// TestPayloadCutExactBatch checks that a batch of exactly 6,291,456 bytes
// is produced whole and one of 6,291,457 is split, with the window flushing
// the remainder.
func TestPayloadCutExactBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		overhead := sqsEnv.Overhead()
		for _, extra := range []int{0, 1} {
			b := newB(t, Policy{BatchSize: 10, Window: time.Second}, sqsEnv)
			mustAdd(t, b, rec("q", "", 1, 1000), rec("q", "", 2, payload.MaxPayloadSize-overhead-1-1000+extra))
			var got []string
			for range 2 {
				if bt := tryNext(b); bt != nil {
					got = append(got, ids(bt))
					checkEvent(t, bt)
					mustDone(t, b, bt, "")
					continue
				}
				bt, err := nextIn(t, b, time.Minute)
				if err != nil {
					break
				}
				got = append(got, ids(bt))
				checkEvent(t, bt)
				mustDone(t, b, bt, "")
			}
			want := map[int]string{0: "[1,2]", 1: "[1 2]"}[extra]
			if g := "[" + joinSp(got) + "]"; g != want {
				t.Errorf("event of %d bytes: batches %s, want %s", payload.MaxPayloadSize+extra, g, want)
			}
		}
	})
}

func joinSp(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out
}

// TestOversize: a record whose event alone passes the limit comes out on
// its own, after the records before it, marked Oversize, and holds the lane
// until Done like any batch.
func TestOversize(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newB(t, Policy{BatchSize: 10}, sqsEnv)
		big := payload.MaxPayloadSize - sqsEnv.Overhead() + 1
		mustAdd(t, b, rec("q", "", 1, 10), rec("q", "", 2, big), rec("q", "", 3, 10))
		bt := tryNext(b)
		if ids(bt) != "1" || bt.Oversize {
			t.Fatalf("first: %s oversize=%v", ids(bt), bt.Oversize)
		}
		mustDone(t, b, bt, "")
		bt = tryNext(b)
		if ids(bt) != "2" || !bt.Oversize || bt.Size != payload.MaxPayloadSize+1 {
			t.Fatalf("second: %s oversize=%v size=%d", ids(bt), bt.Oversize, bt.Size)
		}
		checkEvent(t, bt)
		if x := tryNext(b); x != nil {
			t.Fatalf("released %s while the oversize record was not done", ids(x))
		}
		mustDone(t, b, bt, "")
		bt = tryNext(b)
		if ids(bt) != "3" || bt.Oversize {
			t.Fatalf("third: %s oversize=%v", ids(bt), bt.Oversize)
		}
		mustDone(t, b, bt, "")

		// A record of exactly the limit is not oversize.
		mustAdd(t, b, rec("q", "", 4, big-1))
		bt = tryNext(b)
		if ids(bt) != "4" || bt.Oversize || bt.Size != payload.MaxPayloadSize {
			t.Fatalf("exact: %s oversize=%v size=%d", ids(bt), bt.Oversize, bt.Size)
		}
		mustDone(t, b, bt, "")
	})
}

// TestGroupedSizes checks that sizes of Kafka and RabbitMQ events (records
// grouped by topic-partition or queue) are exact, with several groups in a
// lane, and that the cut holds on them.
func TestGroupedSizes(t *testing.T) {
	envs := map[string]payload.Envelope{
		"msk":              payload.MSK("arn:aws:kafka:us-east-1:000000000000:cluster/c/1", "b-1:9092"),
		"selfmanagedkafka": payload.SelfManagedKafka("b-1:9092"),
		"rabbitmq":         payload.RabbitMQ("arn:aws:mq:us-east-1:000000000000:broker:b:b-1"),
		"activemq":         payload.ActiveMQ("arn:aws:mq:us-east-1:000000000000:broker:b:b-1"),
		"documentdb":       payload.DocumentDB("arn:aws:rds:us-east-1:000000000000:cluster:c"),
		"kinesis":          payload.StreamRecords("arn:aws:kinesis:us-east-1:000000000000:stream/s"),
	}
	for name, env := range envs {
		t.Run(name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			const limit = 5000
			b := newB(t, Policy{BatchSize: 50}, env, WithMaxPayloadSize(limit))
			var recs []source.Record
			for i := range 400 {
				r := rec("lane", "", i, 2+rng.IntN(300))
				r.Group = "topic-" + strconv.Itoa(rng.IntN(3))
				if i%2 == 1 {
					// Encoded on demand (source.Record.Encoder), as Kafka
					// records are: measured and written the same way.
					r.Encoder, r.Size, r.Data = bytesEncoder(r.Data), len(r.Data), nil
				}
				recs = append(recs, r)
			}
			mustAdd(t, b, recs...)
			n := 0
			for bt := tryNext(b); bt != nil; bt = tryNext(b) {
				ev := checkEvent(t, bt)
				if len(ev) > limit {
					t.Fatalf("event of %d bytes", len(ev))
				}
				if !json.Valid(ev) {
					t.Fatalf("invalid event %q", ev)
				}
				// Full: the next record would not have fit.
				if len(bt.Records) < 50 && n+len(bt.Records) < len(recs) {
					nb := payload.NewBuilder(env)
					for _, r := range bt.Records {
						r.AddTo(nb)
					}
					next := recs[n+len(bt.Records)]
					if nb.SizeWith(next.Group, next.Len()) <= limit {
						t.Fatalf("batch cut at %d records although the next fits", len(bt.Records))
					}
				}
				for i, r := range bt.Records {
					if r.ID != recs[n+i].ID {
						t.Fatalf("order: got %s want %s", r.ID, recs[n+i].ID)
					}
				}
				n += len(bt.Records)
				mustDone(t, b, bt, "")
			}
			if n != len(recs) {
				t.Fatalf("got %d records, want %d", n, len(recs))
			}
		})
	}
}

// TestInFlightPerLane: one batch in flight per lane; other lanes go on.
func TestInFlightPerLane(t *testing.T) {
	b := newB(t, Policy{BatchSize: 2}, sqsEnv)
	mustAdd(t, b, rec("a", "", 1, 10), rec("a", "", 2, 10), rec("a", "", 3, 10), rec("b", "", 4, 10))
	a1 := tryNext(b)
	b1 := tryNext(b)
	if ids(a1) != "1,2" || ids(b1) != "4" {
		t.Fatalf("got %s and %s", ids(a1), ids(b1))
	}
	if x := tryNext(b); x != nil {
		t.Fatalf("released %s of a lane in flight", ids(x))
	}
	if b.InFlight() != 2 {
		t.Fatalf("InFlight() = %d", b.InFlight())
	}
	if b.Buffered("a") != 1 || b.Buffered("b") != 0 || b.Len() != 1 {
		t.Fatalf("buffered a=%d b=%d len=%d", b.Buffered("a"), b.Buffered("b"), b.Len())
	}
	mustDone(t, b, b1, "")
	if x := tryNext(b); x != nil {
		t.Fatalf("released %s after another lane's Done", ids(x))
	}
	mustDone(t, b, a1, "")
	if x := tryNext(b); ids(x) != "3" {
		t.Fatalf("got %s, want 3", ids(x))
	}
	if err := b.Done(a1, nil); !errors.Is(err, ErrNotInFlight) {
		t.Fatalf("second Done: %v", err)
	}
	other := newB(t, Policy{BatchSize: 2}, sqsEnv)
	if err := other.Done(b1, nil); !errors.Is(err, ErrNotInFlight) {
		t.Fatalf("Done on another Batcher: %v", err)
	}
}

func TestSubLane(t *testing.T) {
	// Stable values: SubLane is FNV-1a 32 modulo the factor; changing it
	// would move keys between sub-lanes across a restart.
	for _, key := range []string{"", "a", "pk-1", "49590338271490256608559692538361571095921575989136588898", "\u00eb"} {
		for factor := 1; factor <= MaxParallelizationFactor; factor++ {
			h := fnv.New32a()
			h.Write([]byte(key))
			if got, want := SubLane(key, factor), int(h.Sum32()%uint32(factor)); got != want {
				t.Errorf("SubLane(%q, %d) = %d, want %d", key, factor, got, want)
			}
		}
	}
	if got := SubLane("a", 10); got != 0 {
		t.Errorf("SubLane(a, 10) = %d, want 0", got)
	}
	// Spread: every sub-lane is used by a modest number of keys.
	seen := map[int]int{}
	for i := range 1000 {
		seen[SubLane("key-"+strconv.Itoa(i), 10)]++
	}
	for s := range 10 {
		if seen[s] < 50 {
			t.Errorf("sub-lane %d got %d of 1000 keys", s, seen[s])
		}
	}
}

// TestParallelization: with a factor of 4 a lane has up to 4 batches in
// flight, one per sub-lane, and each key's records stay in order.
func TestParallelization(t *testing.T) {
	const pf = 4
	b := newB(t, Policy{BatchSize: 3, ParallelizationFactor: pf}, payload.Records(""))
	var recs []source.Record
	for i := range 60 {
		recs = append(recs, rec("shard-0", "k"+strconv.Itoa(i%7), i, 10))
	}
	mustAdd(t, b, recs...)
	var inflight []*Batch
	for bt := tryNext(b); bt != nil; bt = tryNext(b) {
		inflight = append(inflight, bt)
	}
	subs := map[int]bool{}
	for _, bt := range inflight {
		if subs[bt.SubLane] {
			t.Fatalf("two batches in flight on sub-lane %d", bt.SubLane)
		}
		subs[bt.SubLane] = true
	}
	used := map[int]bool{}
	for i := range 7 {
		used[SubLane("k"+strconv.Itoa(i), pf)] = true
	}
	if len(inflight) != len(used) || len(used) < 2 {
		t.Fatalf("%d batches in flight, %d sub-lanes used", len(inflight), len(used))
	}
	// Drain in a scrambled Done order; check per-key order and sub-lanes.
	last := map[string]int{}
	rng := rand.New(rand.NewPCG(3, 4))
	got := 0
	for len(inflight) > 0 {
		i := rng.IntN(len(inflight))
		bt := inflight[i]
		inflight = append(inflight[:i], inflight[i+1:]...)
		for _, r := range bt.Records {
			id, _ := strconv.Atoi(r.ID)
			if p, ok := last[r.Key]; ok && p >= id {
				t.Fatalf("key %s: record %d after %d", r.Key, id, p)
			}
			last[r.Key] = id
			if SubLane(r.Key, pf) != bt.SubLane {
				t.Fatalf("record of key %s in sub-lane %d", r.Key, bt.SubLane)
			}
			got++
		}
		mustDone(t, b, bt, "")
		for bt := tryNext(b); bt != nil; bt = tryNext(b) {
			inflight = append(inflight, bt)
		}
	}
	if got != 60 {
		t.Fatalf("got %d records", got)
	}
}

// TestManyLanes runs producers and concurrent consumers over 64 lanes with
// sub-lanes, checking per-key order and at most one batch in flight per
// sub-lane. Run with -race.
func TestManyLanes(t *testing.T) {
	const (
		lanes     = 64
		perLane   = 300
		producers = 4
		workers   = 8
	)
	b := newB(t, Policy{BatchSize: 7, ParallelizationFactor: 2}, payload.Records(""))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var (
		mu       sync.Mutex
		inflight = map[[2]any]bool{}
		last     = map[string]int{}
		total    int
		failed   string
	)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				bt, err := b.Next(ctx)
				if err != nil {
					return
				}
				k := [2]any{bt.Lane, bt.SubLane}
				mu.Lock()
				if inflight[k] {
					failed = "two batches in flight on " + bt.Lane
				}
				inflight[k] = true
				for _, r := range bt.Records {
					id, _ := strconv.Atoi(r.ID)
					lk := bt.Lane + "/" + r.Key
					if p, ok := last[lk]; ok && p >= id {
						failed = "order broken on " + lk
					}
					last[lk] = id
				}
				total += len(bt.Records)
				inflight[k] = false
				if total == lanes*perLane {
					close(done)
				}
				mu.Unlock()
				if err := b.Done(bt, nil); err != nil {
					mu.Lock()
					failed = err.Error()
					mu.Unlock()
				}
			}
		})
	}
	var pw sync.WaitGroup
	for p := range producers {
		pw.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(p), 9))
			next := make([]int, lanes)
			remaining := 0
			for l := p; l < lanes; l += producers {
				remaining += perLane
			}
			for remaining > 0 {
				l := p + producers*rng.IntN(lanes/producers)
				if next[l] == perLane {
					continue
				}
				n := min(1+rng.IntN(5), perLane-next[l])
				recs := make([]source.Record, n)
				for i := range recs {
					recs[i] = rec("shard-"+strconv.Itoa(l), "k"+strconv.Itoa(next[l]%5), next[l], 20)
					next[l]++
				}
				if err := b.AddAll(recs); err != nil {
					return
				}
				remaining -= n
			}
		})
	}
	pw.Wait()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Error("timed out")
	}
	cancel()
	wg.Wait()
	if failed != "" {
		t.Fatal(failed)
	}
	if b.Len() != 0 {
		t.Fatalf("%d records left", b.Len())
	}
	if n := busyLanes(b); n != 0 {
		t.Fatalf("%d lanes not idle", n)
	}
}

func TestNextContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newB(t, Policy{BatchSize: 10}, sqsEnv)
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error)
		go func() {
			_, err := b.Next(ctx)
			errc <- err
		}()
		synctest.Wait()
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("Next = %v, want context.Canceled", err)
		}
	})
}

// TestNextWakes: a waiting Next is woken by Add, by Done and by Close.
func TestNextWakes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newB(t, Policy{BatchSize: 10}, sqsEnv)
		type res struct {
			bt  *Batch
			err error
		}
		resc := make(chan res)
		next := func() {
			go func() {
				bt, err := b.Next(context.Background())
				resc <- res{bt, err}
			}()
			synctest.Wait()
		}
		next()
		mustAdd(t, b, rec("q", "", 1, 10))
		r := <-resc
		if ids(r.bt) != "1" {
			t.Fatalf("got %s, %v", ids(r.bt), r.err)
		}
		mustAdd(t, b, rec("q", "", 2, 10))
		next()
		mustDone(t, b, r.bt, "")
		if r2 := <-resc; ids(r2.bt) != "2" {
			t.Fatalf("got %s, %v", ids(r2.bt), r2.err)
		}
		next()
		next()
		b.Close()
		for range 2 {
			if r := <-resc; !errors.Is(r.err, ErrClosed) {
				t.Fatalf("Next after Close = %v", r.err)
			}
		}
		if err := b.Add(rec("q", "", 3, 10)); !errors.Is(err, ErrClosed) {
			t.Fatalf("Add after Close = %v", err)
		}
		b.Close()
	})
}

// TestEndLane: an ended lane releases its records without waiting for the
// window and is forgotten when done.
func TestEndLane(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newB(t, Policy{BatchSize: 2, Window: time.Minute}, payload.Records(""))
		mustAdd(t, b, rec("s", "", 1, 10), rec("s", "", 2, 10), rec("s", "", 3, 10))
		bt := tryNext(b)
		if ids(bt) != "1,2" {
			t.Fatalf("got %s", ids(bt))
		}
		b.EndLane("s")
		mustDone(t, b, bt, "")
		bt = tryNext(b)
		if ids(bt) != "3" {
			t.Fatalf("got %s, want 3 at once", ids(bt))
		}
		mustDone(t, b, bt, "")
		if n := len(b.lanes); n != 0 {
			t.Fatalf("%d lanes kept", n)
		}
		b.EndLane("unknown")
	})
}

func TestBatchOwnsRecords(t *testing.T) {
	// Records added after a batch was cut never overwrite it.
	b := newB(t, Policy{BatchSize: 2}, sqsEnv)
	mustAdd(t, b, rec("q", "", 1, 10), rec("q", "", 2, 10))
	bt := tryNext(b)
	for i := 3; i < 40; i++ {
		mustAdd(t, b, rec("q", "", i, 10))
	}
	if ids(bt) != "1,2" {
		t.Fatalf("batch changed to %s", ids(bt))
	}
	if len(bt.Records) != cap(bt.Records) {
		t.Fatal("batch records have spare capacity an append could overwrite")
	}
}

// TestQueueReuse: an idle sub-lane is forgotten and its memory reused; a
// stale batch of the old incarnation can neither be done twice nor release
// the new one.
func TestQueueReuse(t *testing.T) {
	b := newB(t, Policy{BatchSize: 2}, sqsEnv)
	mustAdd(t, b, rec("a", "", 1, 10))
	old := tryNext(b)
	mustDone(t, b, old, "")
	mustAdd(t, b, rec("a", "", 2, 10), rec("a", "", 3, 10), rec("a", "", 4, 10))
	cur := tryNext(b)
	if ids(cur) != "2,3" || old.q != cur.q {
		t.Fatalf("got %s, reused=%v", ids(cur), old.q == cur.q)
	}
	if err := b.Done(old, nil); !errors.Is(err, ErrNotInFlight) {
		t.Fatalf("stale Done = %v", err)
	}
	if x := tryNext(b); x != nil {
		t.Fatalf("stale Done released %s", ids(x))
	}
	if ids(old) != "1" {
		t.Fatalf("old batch changed to %s", ids(old))
	}
	mustDone(t, b, cur, "")
	if x := tryNext(b); ids(x) != "4" {
		t.Fatalf("got %s", ids(x))
	}
}

// TestDoneAfterClose: batches in flight at Close can still be done.
func TestDoneAfterClose(t *testing.T) {
	b := newB(t, Policy{BatchSize: 2}, sqsEnv)
	mustAdd(t, b, rec("a", "", 1, 10), rec("b", "", 2, 10))
	x, y := tryNext(b), tryNext(b)
	b.Close()
	mustDone(t, b, x, "")
	mustDone(t, b, y, "")
	if b.InFlight() != 0 {
		t.Fatalf("InFlight() = %d", b.InFlight())
	}
	if b.Len() != 0 || b.Buffered("a") != 0 {
		t.Fatal("records left after Close")
	}
}

// TestIdleLanes: idle sub-lanes are kept for reuse but forgotten after a
// minute or beyond maxIdle, so memory follows the lanes in use.
func TestIdleLanes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newB(t, Policy{BatchSize: 10}, sqsEnv)
		cycle := func(lane string) {
			t.Helper()
			mustAdd(t, b, rec(lane, "", 1, 10))
			bt := tryNext(b)
			if bt == nil || bt.Lane != lane {
				t.Fatalf("no batch for %s", lane)
			}
			mustDone(t, b, bt, "")
		}
		lanes := func() int {
			b.mu.Lock()
			defer b.mu.Unlock()
			return len(b.lanes)
		}
		for i := range maxIdle + 100 {
			cycle("group-" + strconv.Itoa(i))
		}
		if n := lanes(); n != maxIdle {
			t.Fatalf("%d lanes kept, want %d", n, maxIdle)
		}
		time.Sleep(idleTTL)
		cycle("other")
		if n := lanes(); n != 1 {
			t.Fatalf("%d lanes kept after the TTL, want 1", n)
		}
		// A lane that was idle and got busy again is not removed under it.
		b.mu.Lock()
		b.sweep(time.Now()) // nothing to sweep yet
		b.mu.Unlock()
		mustAdd(t, b, rec("other", "", 2, 10))
		time.Sleep(2 * idleTTL)
		b.mu.Lock()
		b.sweep(time.Now())
		b.mu.Unlock()
		if bt := tryNext(b); bt == nil || bt.Lane != "other" || ids(bt) != "2" {
			t.Fatal("busy lane lost")
		}
	})
}

// TestOneGroupEvent: a batch of one group (a Kafka partition) is written
// without a Builder, byte for byte as the Builder writes it, for grouped and
// ungrouped envelopes and records with Data or an Encoder.
func TestOneGroupEvent(t *testing.T) {
	for name, env := range map[string]payload.Envelope{
		"kafka": payload.SelfManagedKafka("b-1:9092"), "sqs": sqsEnv, "rabbitmq": payload.RabbitMQ("arn:aws:mq:us-east-1:000000000000:broker:b:b-1"),
	} {
		t.Run(name, func(t *testing.T) {
			b := newB(t, Policy{BatchSize: 10}, env)
			var recs []source.Record
			for i := range 10 {
				r := rec("lane", "", i, 2+i*7)
				r.Group = "topic-0"
				if i%3 == 0 {
					r.Encoder, r.Size, r.Data = bytesEncoder(r.Data), len(r.Data), nil
				}
				recs = append(recs, r)
			}
			mustAdd(t, b, recs...)
			bt := tryNext(b)
			if bt == nil || len(bt.Records) != 10 {
				t.Fatalf("batch %v, want the 10 records", bt)
			}
			ev := checkEvent(t, bt)
			nb := payload.NewBuilder(bt.Envelope())
			for _, r := range bt.Records {
				r.AddTo(nb)
			}
			if want := nb.Bytes(); string(ev) != string(want) {
				t.Fatalf("event\n%s\nwant (Builder)\n%s", ev, want)
			}
		})
	}
}

// TestDoneNext: DoneNext releases the batch and returns the next ready one
// (of its own lane or another), nil when none is ready or after Close, and
// wakes a waiting Next only when something is left for it.
func TestDoneNext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newB(t, Policy{BatchSize: 2}, sqsEnv)
		mustAdd(t, b, rec("a", "", 1, 10), rec("a", "", 2, 10), rec("a", "", 3, 10), rec("a", "", 4, 10))
		a1 := tryNext(b)
		woken := make(chan *Batch, 1)
		go func() {
			bt, _ := b.Next(context.Background())
			woken <- bt
		}()
		synctest.Wait()
		// Lane a's next batch is ready once a1 is done: DoneNext takes it,
		// and Next, with nothing left for it, sleeps on.
		a2, err := b.DoneNext(a1, nil)
		if err != nil || ids(a2) != "3,4" {
			t.Fatalf("DoneNext = %s, %v; want 3,4", ids(a2), err)
		}
		synctest.Wait()
		select {
		case bt := <-woken:
			t.Fatalf("Next woke with %s although DoneNext took the only ready batch", ids(bt))
		default:
		}
		// Another lane's batch becomes ready while a2 is in flight: a
		// DoneNext that finds two ready takes one and wakes Next for the
		// other.
		mustAdd(t, b, rec("b", "", 5, 10))
		if bt := <-woken; ids(bt) != "5" {
			t.Fatalf("Next = %s, want 5", ids(bt))
		}
		mustAdd(t, b, rec("a", "", 6, 10), rec("a", "", 7, 10), rec("c", "", 8, 10), rec("c", "", 9, 10))
		c := tryNext(b) // c's batch; a's waits for a2
		if ids(c) != "8,9" {
			t.Fatalf("got %s, want 8,9", ids(c))
		}
		a3, err := b.DoneNext(a2, nil)
		if err != nil || ids(a3) != "6,7" {
			t.Fatalf("DoneNext = %s, %v; want 6,7", ids(a3), err)
		}
		// Nothing ready: nil, and the Done happened.
		if bt, err := b.DoneNext(a3, nil); bt != nil || err != nil {
			t.Fatalf("DoneNext with nothing ready = %s, %v", ids(bt), err)
		}
		if _, err := b.DoneNext(a3, nil); !errors.Is(err, ErrNotInFlight) {
			t.Fatalf("second DoneNext: %v", err)
		}
		// After Close, DoneNext releases and returns nothing.
		mustAdd(t, b, rec("c", "", 10, 10), rec("c", "", 11, 10))
		b.Close()
		if bt, err := b.DoneNext(c, nil); bt != nil || err != nil {
			t.Fatalf("DoneNext after Close = %s, %v", ids(bt), err)
		}
	})
}

// TestSize: Size counts the buffered records and their bytes (Record.Len,
// encoders' Size included) until a batch takes them, and nothing after
// Close.
func TestSize(t *testing.T) {
	b := newB(t, Policy{BatchSize: 2, Window: time.Minute}, sqsEnv)
	enc := source.Record{Lane: "q", ID: "9", Seq: "9", Encoder: bytesEncoder(`"abcd"`), Size: 6}
	mustAdd(t, b, rec("q", "", 0, 10), rec("q", "", 1, 20), enc)
	check := func(when string, wantN, wantBytes int) {
		t.Helper()
		if n, size := b.Size(); n != wantN || size != wantBytes {
			t.Fatalf("%s: Size %d records, %d bytes; want %d, %d", when, n, size, wantN, wantBytes)
		}
	}
	check("after adding", 3, 36)
	bt := tryNext(b)
	if bt == nil || len(bt.Records) != 2 {
		t.Fatalf("batch %v, want the first two records", bt)
	}
	check("after a batch", 1, 6)
	mustDone(t, b, bt, "")
	b.Close()
	check("after Close", 0, 0)
}
