// Package pollertest is the conformance suite every poller runs, against
// its real server: records come out in lane order and at least once, a
// record reported done is not redelivered after a restart (also when it was
// acknowledged first, as the pipeline does with filtered-out records), an
// unfinished record is, a stream never checkpoints past an unfinished
// record, Close with records in flight is prompt and hands them to the next
// poller (and, for a queue that acknowledges cumulatively, the records
// finished after them), and a queue takes failed records back (at once
// when stopping) while the succeeded records of the same batch stay
// finished.
//
// Every wait is bounded, and a record that does not come fails the test
// with what is missing: no subtest passes because nothing arrived.
//
//	func TestConformance(t *testing.T) {
//		pollertest.Run(t, pollertest.Harness{Features: ..., Setup: ...})
//	}
package pollertest

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/esmd/esmd/source"
)

// Features says which guarantees a source gives.
type Features struct {
	// Ordered: records of one key come out in the order produced, and the
	// source checkpoints (streams, Kafka). Unordered sources (SQS standard)
	// only promise at-least-once.
	Ordered bool
	// Queue: the source's Delivery is source.Queue (SQS, Amazon MQ): it is
	// told of failures and hands failed records back to its broker, and a
	// record it was told is finished is never delivered again, whatever
	// else is unfinished. It enables the FailedIsRedelivered and
	// StoppedIsRedeliveredAtOnce subtests.
	Queue bool
	// Cumulative: the queue acknowledges a prefix of its deliveries (Amazon
	// MQ for ActiveMQ, ack mode client): a record finished while one
	// delivered before it is unfinished is acknowledged when that one is
	// finished too, so a Close meanwhile may deliver it again (at least
	// once). What was delivered before the first unfinished record never
	// comes back.
	Cumulative bool
	// Redelivery is how long a record may take to come back after a
	// failure outcome handed it back or the poller that held it was
	// closed: the queue's visibility timeout (SQS), the requeue delay
	// (RabbitMQ); 0 for sources that re-read from a checkpoint at once.
	// When it is not 0, records handed back with source.ErrStopped must
	// come back within half of it: at once, not after a failure's delay.
	Redelivery time.Duration
}

// Harness connects the suite to one source, fresh for each subtest.
type Harness struct {
	Features Features
	// Setup prepares an empty source (a new stream, queue, topic) for one
	// subtest and returns the functions the subtest uses.
	Setup func(t *testing.T) Source
}

// Source is one empty source made by Harness.Setup.
type Source struct {
	// Open starts a poller: the first, or a new one after a "restart".
	Open func(t *testing.T) source.Poller
	// Produce writes one record with a partition key (FIFO group, Kafka
	// key) and a unique body.
	Produce func(t *testing.T, key, body string)
	// Body extracts the produced body from a record's encoded Data.
	Body func(t *testing.T, r source.Record) string
}

// Run runs the suite.
func Run(t *testing.T, h Harness) {
	t.Run("AllRecordsInKeyOrder", func(t *testing.T) { allInOrder(t, h) })
	t.Run("DoneIsNotRedelivered", func(t *testing.T) { doneNotRedelivered(t, h) })
	t.Run("UnfinishedIsRedelivered", func(t *testing.T) { unfinishedRedelivered(t, h) })
	t.Run("AckedFirstIsNotRedelivered", func(t *testing.T) { ackedFirstNotRedelivered(t, h) })
	t.Run("CloseWithRecordsInFlight", func(t *testing.T) { closeInFlight(t, h) })
	if h.Features.Ordered {
		t.Run("NoCheckpointPastUnfinished", func(t *testing.T) { noCheckpointPastUnfinished(t, h) })
	}
	if h.Features.Queue {
		t.Run("FailedIsRedelivered", func(t *testing.T) { failedRedelivered(t, h) })
		t.Run("StoppedIsRedeliveredAtOnce", func(t *testing.T) { stoppedRedelivered(t, h) })
	}
}

const (
	keys = 4
	// wait bounds how long records that must come may take (on top of
	// Features.Redelivery when they come back).
	wait = 30 * time.Second
	// closeWithin bounds Close.
	closeWithin = 10 * time.Second
)

func produce(t *testing.T, s Source, n int, prefix string) []string {
	t.Helper()
	var bodies []string
	for i := range n {
		b := fmt.Sprintf("%s-%04d", prefix, i)
		s.Produce(t, fmt.Sprintf("key-%d", i%keys), b)
		bodies = append(bodies, b)
	}
	return bodies
}

// poller is a poller the suite opened: closed once, by the suite or at the
// end of the test.
type poller struct {
	source.Poller
	once sync.Once
	err  error
}

func open(t *testing.T, s Source) *poller {
	t.Helper()
	p := &poller{Poller: s.Open(t)}
	t.Cleanup(func() { p.close() })
	return p
}

func (p *poller) close() error {
	p.once.Do(func() { p.err = p.Poller.Close() })
	return p.err
}

// closeBounded closes p and fails the test when Close takes longer than
// closeWithin or fails.
func closeBounded(t *testing.T, p *poller) {
	t.Helper()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- p.close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("close: %v", err)
		}
	case <-time.After(closeWithin):
		t.Fatalf("Close has not returned after %v", closeWithin)
	}
	t.Logf("closed in %v", time.Since(start).Round(time.Millisecond))
}

func ack(t *testing.T, p source.Poller, recs []source.Record, outcome error) {
	t.Helper()
	if err := p.Ack(context.Background(), recs, outcome); err != nil {
		t.Fatalf("ack %d records (outcome %v): %v", len(recs), outcome, err)
	}
}

// mustPoll polls until every body of want has been delivered and returns
// the records in poll order, each poll's records first given to each (when
// not nil). It fails the test with the missing bodies when they have not
// all come within d.
func mustPoll(t *testing.T, p source.Poller, s Source, want []string, d time.Duration, each func([]source.Record)) []source.Record {
	t.Helper()
	missing := map[string]bool{}
	for _, b := range want {
		missing[b] = true
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var out []source.Record
	for len(missing) > 0 {
		recs, err := p.Poll(ctx)
		if err != nil {
			if ctx.Err() == nil {
				t.Fatalf("poll: %v", err)
			}
			var m []string
			for b := range missing {
				m = append(m, b)
			}
			sort.Strings(m)
			t.Fatalf("%d of %d records not delivered within %v: %s (got %d records)",
				len(m), len(want), d, strings.Join(m, " "), len(out))
		}
		for _, r := range recs {
			delete(missing, s.Body(t, r))
		}
		if each != nil {
			each(recs)
		}
		out = append(out, recs...)
	}
	return out
}

// pollFor polls for d and returns what came, for when fewer records than
// produced, or none, are expected.
func pollFor(t *testing.T, p source.Poller, d time.Duration) []source.Record {
	t.Helper()
	if d <= 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var out []source.Record
	for {
		recs, err := p.Poll(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return out
			}
			t.Fatalf("poll: %v", err)
		}
		out = append(out, recs...)
	}
}

// quiet is how long a queue source is watched for records that must not
// come back: they would within its Redelivery.
func quiet(h Harness) time.Duration {
	if !h.Features.Queue {
		return 0
	}
	return h.Features.Redelivery + time.Second
}

func bodies(t *testing.T, s Source, recs []source.Record) []string {
	t.Helper()
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = s.Body(t, r)
	}
	return out
}

func set(bs []string) map[string]bool {
	m := make(map[string]bool, len(bs))
	for _, b := range bs {
		m[b] = true
	}
	return m
}

// noneOf fails the test when a record of recs has a body in not.
func noneOf(t *testing.T, s Source, recs []source.Record, not map[string]bool, why string) {
	t.Helper()
	var bad []string
	for _, b := range bodies(t, s, recs) {
		if not[b] {
			bad = append(bad, b)
		}
	}
	if len(bad) > 0 {
		t.Fatalf("%s, delivered again: %v", why, bad)
	}
}

// without returns the bodies of all that are not in not.
func without(all []string, not map[string]bool) []string {
	var out []string
	for _, b := range all {
		if !not[b] {
			out = append(out, b)
		}
	}
	return out
}

func allInOrder(t *testing.T, h Harness) {
	s := h.Setup(t)
	want := produce(t, s, 40, "a")
	p := open(t, s)
	got := mustPoll(t, p, s, want, wait, nil)
	if h.Features.Ordered {
		last := map[string]string{}
		for _, r := range got {
			b := s.Body(t, r)
			if prev, ok := last[r.Key]; ok && b < prev {
				t.Fatalf("key %s: %s after %s", r.Key, b, prev)
			}
			last[r.Key] = b
		}
	}
	ack(t, p, got, nil)
}

func doneNotRedelivered(t *testing.T, h Harness) {
	s := h.Setup(t)
	first := produce(t, s, 10, "old")
	p := open(t, s)
	ack(t, p, mustPoll(t, p, s, first, wait, nil), nil)
	closeBounded(t, p)
	second := produce(t, s, 5, "new")
	p = open(t, s)
	again := mustPoll(t, p, s, second, wait+h.Features.Redelivery, nil)
	again = append(again, pollFor(t, p, quiet(h))...)
	noneOf(t, s, again, set(first), "records done before the restart")
}

func unfinishedRedelivered(t *testing.T, h Harness) {
	s := h.Setup(t)
	want := produce(t, s, 12, "u")
	p := open(t, s)
	got := mustPoll(t, p, s, want, wait, nil)
	// Finish the first half of each key's records only.
	perKey := map[string][]source.Record{}
	for _, r := range got {
		perKey[r.Key] = append(perKey[r.Key], r)
	}
	var done []source.Record
	var unfinished []string
	for _, rs := range perKey {
		done = append(done, rs[:len(rs)/2]...)
		unfinished = append(unfinished, bodies(t, s, rs[len(rs)/2:])...)
	}
	ack(t, p, done, nil)
	closeBounded(t, p)
	p = open(t, s)
	mustPoll(t, p, s, unfinished, wait+h.Features.Redelivery, nil)
}

// ackedFirstNotRedelivered acknowledges records as the pipeline does those
// its filter dropped: with Ack(recs, nil) right after the Poll that
// returned them, while the other records of the poll (and of their lane)
// are still unfinished. The poller is then closed with those in flight. A
// queue source never delivers an acknowledged record again; an ordered
// source may re-read a record acknowledged after an unfinished one of its
// lane (at least once), but nothing before the lane's first unfinished
// record.
func ackedFirstNotRedelivered(t *testing.T, h Harness) {
	s := h.Setup(t)
	want := produce(t, s, 16, "f")
	p := open(t, s)
	// Per lane, in lane order: the first two records are filtered out,
	// then every other one.
	seen := map[string]bool{}
	nth := map[string]int{}
	firstUnfinished := map[string]int{}
	type rec struct {
		lane  string
		n, at int // in the lane, in delivery order
	}
	filtered := map[string]rec{}
	var unfinished []string
	at, firstUnfinishedAt := 0, -1
	mustPoll(t, p, s, want, wait, func(recs []source.Record) {
		var drop []source.Record
		for _, r := range recs {
			at++
			b := s.Body(t, r)
			if seen[b] {
				if firstUnfinishedAt < 0 {
					firstUnfinishedAt = at
				}
				continue // a duplicate: left unfinished
			}
			seen[b] = true
			n := nth[r.Lane]
			nth[r.Lane]++
			if n < 2 || n%2 == 1 {
				drop = append(drop, r)
				filtered[b] = rec{r.Lane, n, at}
				continue
			}
			unfinished = append(unfinished, b)
			if _, ok := firstUnfinished[r.Lane]; !ok {
				firstUnfinished[r.Lane] = n
			}
			if firstUnfinishedAt < 0 {
				firstUnfinishedAt = at
			}
		}
		if len(drop) > 0 {
			ack(t, p, drop, nil)
		}
	})
	if len(unfinished) == 0 {
		t.Fatal("every record was filtered out: the subtest checks nothing")
	}
	// What must not come back.
	gone := map[string]bool{}
	for b, r := range filtered {
		first, ok := firstUnfinished[r.lane]
		if h.Features.Cumulative && r.at < firstUnfinishedAt ||
			!h.Features.Cumulative && (h.Features.Queue || !ok || r.n < first) {
			gone[b] = true
		}
	}
	closeBounded(t, p)
	p = open(t, s)
	again := mustPoll(t, p, s, unfinished, wait+h.Features.Redelivery, nil)
	again = append(again, pollFor(t, p, quiet(h))...)
	noneOf(t, s, again, gone, "records acknowledged first (filtered out) while others were unfinished")
	t.Logf("%d filtered, %d of them must not come back, %d unfinished", len(filtered), len(gone), len(unfinished))
}

// closeInFlight closes a poller that holds records: some handed out and not
// acknowledged, some maybe read ahead and not handed out yet. Close must
// return promptly and the next poller must deliver them all (a queue
// within its Redelivery), and not the records acknowledged before.
func closeInFlight(t *testing.T, h Harness) {
	s := h.Setup(t)
	want := produce(t, s, 30, "c")
	p := open(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	first, err := p.Poll(ctx)
	cancel()
	if err != nil {
		t.Fatalf("first poll: %v", err)
	}
	// The first half (rounded up) of each lane's records of the first poll
	// are done: a prefix of each lane.
	perLane := map[string]int{}
	for _, r := range first {
		perLane[r.Lane]++
	}
	taken := map[string]int{}
	var done, stay []source.Record
	prefix := true // the records before the first one not done
	for _, r := range first {
		if taken[r.Lane] < (perLane[r.Lane]+1)/2 {
			taken[r.Lane]++
			done = append(done, r)
			if prefix || !h.Features.Cumulative {
				stay = append(stay, r)
			}
		} else {
			prefix = false
		}
	}
	ack(t, p, done, nil)
	// More records handed out, and never acknowledged.
	more := pollFor(t, p, 500*time.Millisecond)
	doneSet := set(bodies(t, s, done))
	t.Logf("%d done, %d more handed out of %d", len(done), len(first)-len(done)+len(more), len(want))
	closeBounded(t, p)
	within := wait
	if h.Features.Queue {
		within = h.Features.Redelivery + 5*time.Second
	}
	p = open(t, s)
	again := mustPoll(t, p, s, without(want, doneSet), within, nil)
	noneOf(t, s, again, set(bodies(t, s, stay)), "records done before Close")
}

func noCheckpointPastUnfinished(t *testing.T, h Harness) {
	s := h.Setup(t)
	want := produce(t, s, 8, "c")
	p := open(t, s)
	got := mustPoll(t, p, s, want, wait, nil)
	// Everything but the first record of each lane is done, out of order.
	first := map[string]bool{}
	var done []source.Record
	var held []string
	for _, r := range got {
		if !first[r.Lane] {
			first[r.Lane] = true
			held = append(held, s.Body(t, r))
			continue
		}
		done = append([]source.Record{r}, done...)
	}
	ack(t, p, done, nil)
	closeBounded(t, p)
	p = open(t, s)
	mustPoll(t, p, s, held, wait, nil)
}

// failedRedelivered fails records of one poll with source.ErrFailed and
// part of the others with a *source.BatchError: the failed records come
// back (after Redelivery at most), and the succeeded records of the same
// batch never do, to the same poller or, once the failed ones are finished
// too, to the next.
func failedRedelivered(t *testing.T, h Harness) {
	s := h.Setup(t)
	want := produce(t, s, 12, "x")
	p := open(t, s)
	got := mustPoll(t, p, s, want, wait, nil)
	var whole, partial []source.Record
	for i, r := range got {
		if i%3 == 0 {
			whole = append(whole, r)
		} else {
			partial = append(partial, r)
		}
	}
	be := source.NewBatchError(nil)
	var failed, succeeded []string
	failed = append(failed, bodies(t, s, whole)...)
	for i, r := range partial {
		if i%2 == 1 {
			be.Failed(i, nil)
			failed = append(failed, s.Body(t, r))
		} else {
			succeeded = append(succeeded, s.Body(t, r))
		}
	}
	ack(t, p, whole, source.ErrFailed)
	ack(t, p, partial, be)
	start := time.Now()
	ok := set(succeeded)
	back := mustPoll(t, p, s, failed, wait+h.Features.Redelivery, func(recs []source.Record) {
		noneOf(t, s, recs, ok, "succeeded records of a partly failed batch")
	})
	t.Logf("%d failed records back after %v", len(failed), time.Since(start).Round(time.Millisecond))
	ack(t, p, back, nil)
	finishedStayFinished(t, h, s, p)
}

// finishedStayFinished checks that no record comes back, to p or to the
// next poller, once every record was finished.
func finishedStayFinished(t *testing.T, h Harness, s Source, p *poller) {
	t.Helper()
	if late := pollFor(t, p, quiet(h)); len(late) > 0 {
		t.Fatalf("records delivered again after they were all finished: %v", bodies(t, s, late))
	}
	closeBounded(t, p)
	p = open(t, s)
	if late := pollFor(t, p, quiet(h)); len(late) > 0 {
		t.Fatalf("records delivered again after a restart when they were all finished: %v", bodies(t, s, late))
	}
}

// stoppedRedeliveredAtOnce hands records back with source.ErrStopped: they
// come back without a failure's delay (within half of Redelivery).
func stoppedRedelivered(t *testing.T, h Harness) {
	s := h.Setup(t)
	want := produce(t, s, 6, "s")
	p := open(t, s)
	got := mustPoll(t, p, s, want, wait, nil)
	ack(t, p, got, source.ErrStopped)
	start := time.Now()
	back := mustPoll(t, p, s, want, wait+h.Features.Redelivery, nil)
	took := time.Since(start)
	if bound := h.Features.Redelivery / 2; bound > 0 && took > bound {
		t.Fatalf("records handed back with ErrStopped came back after %v, want at once (within %v; a failure's delay is %v)",
			took.Round(time.Millisecond), bound, h.Features.Redelivery)
	}
	t.Logf("back after %v", took.Round(time.Millisecond))
	ack(t, p, back, nil)
	finishedStayFinished(t, h, s, p)
}
