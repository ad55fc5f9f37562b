package sqs

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/esmd/esmd/source"
)

// fifoPoller is a FIFO poller with no receivers and no SQS client, for the
// bookkeeping of settle and deal alone: messages are handed to records as
// a receive would, and settle's answers are read directly.
func fifoPoller(batch int) *Poller {
	p := &Poller{fifo: true, batch: batch, held: map[*message]struct{}{}, room: make(chan struct{}),
		groups: map[string]*fifoGroup{}, o: options{now: time.Now},
		log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	p.ctx = context.Background()
	return p
}

// receiveFIFO hands records one receive of messages named "<group><n>" (A1,
// B1, A2...), the name doubling as message id and receipt handle.
func receiveFIFO(p *Poller, names ...string) map[string]source.Record {
	msgs := make([]types.Message, len(names))
	for i, n := range names {
		msgs[i] = types.Message{MessageId: aws.String(n), ReceiptHandle: aws.String(n), Body: aws.String(n),
			Attributes: map[string]string{"MessageGroupId": n[:1], "SequenceNumber": fmt.Sprint(i)}}
	}
	recs := p.records(msgs)
	out := map[string]source.Record{}
	for _, r := range recs {
		out[r.ID] = r
	}
	return out
}

func handles(ms []*message) string {
	var out []string
	for _, m := range ms {
		out = append(out, m.handle)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

// TestFIFOSettle: on a FIFO queue a failed message goes back with the later
// messages of its group, named by the function or not, in whatever order
// the pipeline reports them, and a message done while an earlier one of its
// group is held waits for it; other groups are deleted. Each step is one
// Done (ok) or Failed call and the messages it deletes and hands back.
func TestFIFOSettle(t *testing.T) {
	type step struct {
		ok         bool
		recs       string // comma-separated names
		del, back  string // what the call deletes and hands back, sorted
		heldAfter  int
		groupsLeft int
	}
	cases := []struct {
		name    string
		receive []string
		steps   []step
	}{
		{"partial response: successes first", []string{"A1", "B1", "A2", "A3", "B2"}, []step{
			{ok: true, recs: "A1,B1,A3,B2", del: "A1,B1,B2", back: "", heldAfter: 2, groupsLeft: 1},
			{ok: false, recs: "A2", del: "", back: "A2,A3", heldAfter: 0, groupsLeft: 0},
		}},
		{"partial response: failure first", []string{"A1", "B1", "A2", "A3"}, []step{
			{ok: false, recs: "A2", del: "", back: "A2", heldAfter: 3, groupsLeft: 2},
			{ok: true, recs: "A1,B1,A3", del: "A1,B1", back: "A3", heldAfter: 0, groupsLeft: 0},
		}},
		{"later batch of a failed group goes back", []string{"A1", "A2", "A3"}, []step{
			{ok: false, recs: "A1", del: "", back: "A1", heldAfter: 2, groupsLeft: 1},
			{ok: true, recs: "A2", del: "", back: "A2", heldAfter: 1, groupsLeft: 1},
			{ok: true, recs: "A3", del: "", back: "A3", heldAfter: 0, groupsLeft: 0},
		}},
		{"filtered out behind a buffered message", []string{"A1", "A2", "A3"}, []step{
			{ok: true, recs: "A2", del: "", back: "", heldAfter: 3, groupsLeft: 1},
			{ok: true, recs: "A1", del: "A1,A2", back: "", heldAfter: 1, groupsLeft: 1},
			{ok: true, recs: "A3", del: "A3", back: "", heldAfter: 0, groupsLeft: 0},
		}},
		{"filtered out behind a failing message", []string{"A1", "A2", "B1"}, []step{
			{ok: true, recs: "A2,B1", del: "B1", back: "", heldAfter: 2, groupsLeft: 1},
			{ok: false, recs: "A1", del: "", back: "A1,A2", heldAfter: 0, groupsLeft: 0},
		}},
		{"whole batch fails", []string{"A1", "B1", "C1"}, []step{
			{ok: false, recs: "A1,B1,C1", del: "", back: "A1,B1,C1", heldAfter: 0, groupsLeft: 0},
		}},
		{"reported twice", []string{"A1", "A2"}, []step{
			{ok: true, recs: "A2", del: "", back: "", heldAfter: 2, groupsLeft: 1},
			{ok: true, recs: "A2", del: "", back: "", heldAfter: 2, groupsLeft: 1},
			{ok: true, recs: "A1", del: "A1,A2", back: "", heldAfter: 0, groupsLeft: 0},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := fifoPoller(10)
			recs := receiveFIFO(p, c.receive...)
			for i, s := range c.steps {
				var in []source.Record
				for _, n := range strings.Split(s.recs, ",") {
					in = append(in, recs[n])
				}
				del, back := p.settle(in, s.ok)
				if got := handles(del); got != s.del {
					t.Errorf("step %d: deletes %q, want %q", i, got, s.del)
				}
				if got := handles(back); got != s.back {
					t.Errorf("step %d: hands back %q, want %q", i, got, s.back)
				}
				if len(p.held) != s.heldAfter || len(p.groups) != s.groupsLeft {
					t.Errorf("step %d: %d held in %d groups, want %d in %d", i, len(p.held), len(p.groups), s.heldAfter, s.groupsLeft)
				}
			}
		})
	}
}
