// Package pollertest is the conformance suite every poller runs, against
// its real server: records come out in lane order and at least once, a
// record reported done is not redelivered after a restart, an unfinished
// record is, and a stream never checkpoints past an unfinished record.
//
//	func TestConformance(t *testing.T) {
//		pollertest.Run(t, pollertest.Harness{Features: ..., Open: ..., Produce: ..., Body: ...})
//	}
package pollertest

import (
	"context"
	"fmt"
	"sort"
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
	// Redelivery is how long an unfinished record may take to come back
	// after the poller that read it is closed (an SQS visibility timeout);
	// 0 for sources that re-read from a checkpoint at once.
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
	if h.Features.Ordered {
		t.Run("NoCheckpointPastUnfinished", func(t *testing.T) { noCheckpointPastUnfinished(t, h) })
	}
}

const keys = 4

func produce(t *testing.T, s Source, n int, prefix string) []string {
	var bodies []string
	for i := range n {
		b := fmt.Sprintf("%s-%04d", prefix, i)
		s.Produce(t, fmt.Sprintf("key-%d", i%keys), b)
		bodies = append(bodies, b)
	}
	return bodies
}

// pollUntil polls until want bodies were seen (or the deadline), returning
// the records in poll order.
func pollUntil(t *testing.T, p source.Poller, s Source, want int, wait time.Duration) []source.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var out []source.Record
	seen := map[string]bool{}
	for len(seen) < want {
		recs, err := p.Poll(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			t.Fatalf("poll: %v", err)
		}
		for _, r := range recs {
			seen[s.Body(t, r)] = true
			out = append(out, r)
		}
	}
	return out
}

func bodies(t *testing.T, s Source, recs []source.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = s.Body(t, r)
	}
	return out
}

func allInOrder(t *testing.T, h Harness) {
	s := h.Setup(t)
	want := produce(t, s, 40, "a")
	p := s.Open(t)
	defer p.Close()
	got := pollUntil(t, p, s, len(want), 30*time.Second)
	seen := map[string]bool{}
	for _, b := range bodies(t, s, got) {
		seen[b] = true
	}
	for _, b := range want {
		if !seen[b] {
			t.Fatalf("record %s never delivered (got %d records)", b, len(got))
		}
	}
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
	if err := p.Ack(context.Background(), got, nil); err != nil {
		t.Fatal(err)
	}
}

func doneNotRedelivered(t *testing.T, h Harness) {
	s := h.Setup(t)
	first := produce(t, s, 10, "old")
	p := s.Open(t)
	got := pollUntil(t, p, s, len(first), 30*time.Second)
	if err := p.Ack(context.Background(), got, nil); err != nil {
		t.Fatal(err)
	}
	p.Close()
	second := produce(t, s, 5, "new")
	p = s.Open(t)
	defer p.Close()
	again := pollUntil(t, p, s, len(second), 30*time.Second+h.Features.Redelivery)
	for _, b := range bodies(t, s, again) {
		if b < "new" {
			t.Fatalf("record %s was done but delivered again", b)
		}
	}
}

func unfinishedRedelivered(t *testing.T, h Harness) {
	s := h.Setup(t)
	want := produce(t, s, 12, "u")
	p := s.Open(t)
	got := pollUntil(t, p, s, len(want), 30*time.Second)
	// Finish the first half of each key's records only.
	perKey := map[string][]source.Record{}
	for _, r := range got {
		perKey[r.Key] = append(perKey[r.Key], r)
	}
	var done []source.Record
	unfinished := map[string]bool{}
	for _, rs := range perKey {
		done = append(done, rs[:len(rs)/2]...)
		for _, r := range rs[len(rs)/2:] {
			unfinished[s.Body(t, r)] = true
		}
	}
	if err := p.Ack(context.Background(), done, nil); err != nil {
		t.Fatal(err)
	}
	p.Close()
	p = s.Open(t)
	defer p.Close()
	again := pollUntil(t, p, s, len(unfinished), 30*time.Second+h.Features.Redelivery)
	seen := map[string]bool{}
	for _, b := range bodies(t, s, again) {
		seen[b] = true
	}
	var missing []string
	for b := range unfinished {
		if !seen[b] {
			missing = append(missing, b)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Fatalf("unfinished records not redelivered after restart: %v", missing)
	}
}

func noCheckpointPastUnfinished(t *testing.T, h Harness) {
	s := h.Setup(t)
	want := produce(t, s, 8, "c")
	p := s.Open(t)
	got := pollUntil(t, p, s, len(want), 30*time.Second)
	// Everything but the first record of each lane is done, out of order.
	first := map[string]bool{}
	var done []source.Record
	held := map[string]bool{}
	for _, r := range got {
		if !first[r.Lane] {
			first[r.Lane] = true
			held[s.Body(t, r)] = true
			continue
		}
		done = append([]source.Record{r}, done...)
	}
	if err := p.Ack(context.Background(), done, nil); err != nil {
		t.Fatal(err)
	}
	p.Close()
	p = s.Open(t)
	defer p.Close()
	again := pollUntil(t, p, s, len(want), 30*time.Second)
	seen := map[string]bool{}
	for _, b := range bodies(t, s, again) {
		seen[b] = true
	}
	for b := range held {
		if !seen[b] {
			t.Fatalf("record %s was never done but the checkpoint passed it", b)
		}
	}
}
