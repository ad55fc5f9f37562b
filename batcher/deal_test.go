package batcher

import (
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/esmd/esmd/source"
)

// receive adds one receive of messages named "<key><n>" (A1, B1, A2...) to
// a dealing batcher, as the pipeline adds one SQS receive, and returns the
// lane each was dealt to by name.
func receive(t *testing.T, b *Batcher, fifo bool, names ...string) {
	t.Helper()
	var recs []source.Record
	for i, n := range names {
		r := rec("ignored", "", i, 4)
		r.ID = n
		if fifo {
			r.Key = n[:1]
		}
		recs = append(recs, r)
	}
	if err := b.AddAll(recs); err != nil {
		t.Fatal(err)
	}
}

// drain takes every ready batch and returns them with the lane of each
// record by ID.
func drain(b *Batcher) ([]*Batch, map[string]string) {
	lanes := map[string]string{}
	var out []*Batch
	for bt := tryNext(b); bt != nil; bt = tryNext(b) {
		out = append(out, bt)
		for _, r := range bt.Records {
			lanes[r.ID] = r.Lane
		}
	}
	return out, lanes
}

// TestDealFIFO: a receive's keys (FIFO message groups) share a batch as on
// AWS (SQS-20), and a key whose records the batcher still holds keeps its
// lane in later receives, so it never has two batches in flight; once
// nothing of it is held it goes where the next run goes.
func TestDealFIFO(t *testing.T) {
	b := newB(t, Policy{BatchSize: 10, Lanes: 4}, sqsEnv)
	receive(t, b, true, "A1", "B1", "C1")
	first, lanes1 := drain(b)
	if len(first) != 1 || ids(first[0]) != "A1,B1,C1" {
		t.Fatalf("first receive: %d batches, want one with A1,B1,C1", len(first))
	}
	receive(t, b, true, "D1", "A2")
	second, lanes2 := drain(b)
	// A2 waits on A's lane (its batch is in flight); D1 goes on alone.
	if len(second) != 1 || ids(second[0]) != "D1" || lanes2["D1"] == lanes1["A1"] {
		t.Fatalf("second receive: batches %d, D1 on %q (A1 on %q)", len(second), lanes2["D1"], lanes1["A1"])
	}
	if b.Buffered(lanes1["A1"]) != 1 {
		t.Fatalf("A2 not held on A's lane %q", lanes1["A1"])
	}
	// The first batch is done: A2 follows on A's lane, B and C are free.
	if err := b.Done(first[0], nil); err != nil {
		t.Fatal(err)
	}
	third, lanes3 := drain(b)
	if len(third) != 1 || ids(third[0]) != "A2" || lanes3["A2"] != lanes1["A1"] {
		t.Fatalf("after Done: batches %d, A2 on %q want %q", len(third), lanes3["A2"], lanes1["A1"])
	}
	receive(t, b, true, "B2", "C2")
	fourth, lanes4 := drain(b)
	if len(fourth) != 1 || lanes4["B2"] == lanes1["B1"] || lanes4["B2"] != lanes4["C2"] {
		t.Fatalf("B2 %q C2 %q: a key with nothing held takes the next run's lane (B1 was on %q)", lanes4["B2"], lanes4["C2"], lanes1["B1"])
	}
	// A2, D1, B2 and C2 are in flight: keys A, D, B and C are held.
	if len(b.deal.keys) != 4 {
		t.Fatalf("keys held: %d, want 4", len(b.deal.keys))
	}
	for _, bt := range append(append(second, third...), fourth...) {
		if err := b.Done(bt, nil); err != nil {
			t.Fatal(err)
		}
	}
	if len(b.deal.keys) != 0 {
		t.Fatalf("keys still held after every batch is done: %v", b.deal.keys)
	}
}

// TestDealRuns: records are dealt in runs of BatchSize; without a window
// each receive starts a new run (one receive, one batch: SQS-1), with a
// window runs go on across receives.
func TestDealRuns(t *testing.T) {
	b := newB(t, Policy{BatchSize: 3, Lanes: 100}, sqsEnv)
	receive(t, b, false, "a", "b", "c", "d", "e")
	receive(t, b, false, "f")
	got, _ := drain(b)
	var all []string
	for _, bt := range got {
		all = append(all, ids(bt))
	}
	if strings.Join(all, "|") != "a,b,c|d,e|f" {
		t.Fatalf("batches %q, want a,b,c|d,e|f", all)
	}
	synctest.Test(t, func(t *testing.T) {
		b := newB(t, Policy{BatchSize: 3, Lanes: 100, Window: time.Second}, sqsEnv)
		receive(t, b, false, "a", "b")
		receive(t, b, false, "c", "d")
		got, _ := drain(b)
		if len(got) != 1 || ids(got[0]) != "a,b,c" {
			t.Fatalf("with a window: %d batches", len(got))
		}
		time.Sleep(time.Second)
		got, _ = drain(b)
		if len(got) != 1 || ids(got[0]) != "d" {
			t.Fatalf("after the window: %d batches", len(got))
		}
	})
	// Standard queues have no keys: nothing is tracked.
	if len(b.deal.keys) != 0 {
		t.Fatalf("keys tracked for a standard queue: %v", b.deal.keys)
	}
}

// TestDealBatchSizeOne: one message per run, each key still on one lane.
func TestDealBatchSizeOne(t *testing.T) {
	b := newB(t, Policy{BatchSize: 1, Lanes: 4}, sqsEnv)
	receive(t, b, true, "A1", "A2", "B1")
	got, lanes := drain(b)
	if len(got) != 2 || lanes["A1"] == lanes["B1"] {
		t.Fatalf("BatchSize 1: %d batches, lanes %v", len(got), lanes)
	}
	if b.Buffered(lanes["A1"]) != 1 {
		t.Fatal("A2 not waiting behind A1")
	}
}

// TestLinger: with no batching window a batch that is not full waits
// Linger for more records; a full one goes at once.
func TestLinger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newB(t, Policy{BatchSize: 3, Linger: time.Millisecond}, sqsEnv)
		mustAdd(t, b, rec("q", "", 1, 4))
		if bt := tryNext(b); bt != nil {
			t.Fatal("released before the linger")
		}
		mustAdd(t, b, rec("q", "", 2, 4))
		time.Sleep(time.Millisecond)
		bt := tryNext(b)
		if bt == nil || len(bt.Records) != 2 {
			t.Fatalf("after the linger: %v", bt)
		}
		for i := range 3 {
			mustAdd(t, b, rec("r", "", 10+i, 4))
		}
		if bt := tryNext(b); bt == nil || len(bt.Records) != 3 {
			t.Fatal("a full batch waited for the linger")
		}
	})
}

func TestDealPolicyValidate(t *testing.T) {
	for _, p := range []Policy{
		{BatchSize: 1, Lanes: -1},
		{BatchSize: 1, Lanes: 2, ParallelizationFactor: 2},
		{BatchSize: 1, Linger: -time.Second},
	} {
		if p.Validate() == nil {
			t.Errorf("%+v accepted", p)
		}
	}
}

// TestAbandon: Abandon closes the batcher and returns what it held
// buffered, not the batches in flight.
func TestAbandon(t *testing.T) {
	b := newB(t, Policy{BatchSize: 2}, sqsEnv)
	for i := range 5 {
		mustAdd(t, b, rec("q", "", i, 4))
	}
	mustAdd(t, b, rec("r", "", 9, 4))
	bt := tryNext(b)
	if bt == nil {
		t.Fatal("no batch")
	}
	left := b.Abandon()
	got := map[string]bool{}
	for _, r := range left {
		got[r.ID] = true
	}
	for _, r := range bt.Records {
		if got[r.ID] {
			t.Fatalf("record %s of the batch in flight abandoned", r.ID)
		}
	}
	if len(left)+len(bt.Records) != 6 {
		t.Fatalf("abandoned %d records and %d in flight, want 6 in all", len(left), len(bt.Records))
	}
	if err := b.Add(rec("q", "", 10, 4)); err != ErrClosed {
		t.Fatalf("Add after Abandon: %v", err)
	}
	if left := b.Abandon(); len(left) != 0 {
		t.Fatalf("second Abandon returned %d records", len(left))
	}
}

// TestDealReusesIdleLanes: a run goes to a lane that went idle, so the
// lanes in use follow the batches in flight, not Policy.Lanes; with every
// lane busy, runs go round the lanes.
func TestDealReusesIdleLanes(t *testing.T) {
	b := newB(t, Policy{BatchSize: 2, Lanes: 1000}, sqsEnv)
	used := map[string]bool{}
	var inFlight []*Batch
	for i := range 200 {
		receive(t, b, false, "x"+strconv.Itoa(i), "y"+strconv.Itoa(i))
		got, _ := drain(b)
		inFlight = append(inFlight, got...)
		for _, bt := range got {
			used[bt.Lane] = true
		}
		// Two batches in flight at most, as with two invocations at once.
		for len(inFlight) > 1 {
			mustDone(t, b, inFlight[0], "")
			inFlight = inFlight[1:]
		}
	}
	if len(used) > 3 {
		t.Fatalf("%d lanes used for 200 batches, two in flight at a time", len(used))
	}
	// Every lane busy (none done): the runs go round all of them.
	b = newB(t, Policy{BatchSize: 1, Lanes: 3}, sqsEnv)
	receive(t, b, false, "a", "b", "c", "d")
	got, lanes := drain(b)
	if len(got) != 3 || lanes["a"] == lanes["b"] || lanes["b"] == lanes["c"] || lanes["a"] == lanes["c"] {
		t.Fatalf("%d batches, lanes %v", len(got), lanes)
	}
	if b.Buffered(lanes["a"]) != 1 {
		t.Fatalf("d not dealt behind a on %s: buffered %d", lanes["a"], b.Buffered(lanes["a"]))
	}
}
