package batcher

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/payload"
	"github.com/esmd/esmd/source"
)

// TestMain fails the package when a test leaves a goroutine behind
// (testenv.Leaks). The Batcher starts none itself; this catches tests (and
// future changes) that do.
func TestMain(m *testing.M) { testenv.Main(m) }

var sqsEnv = payload.Records("arn:aws:sqs:us-east-1:000000000000:q")

// rec returns a record whose Data is a JSON string of exactly size bytes
// (size >= 2) and whose ID is id.
func rec(lane, key string, id int, size int) source.Record {
	return source.Record{Lane: lane, Key: key, ID: strconv.Itoa(id), Seq: strconv.Itoa(id), Data: jsonString(size)}
}

// bytesEncoder is a payload.Encoder that appends fixed bytes.
type bytesEncoder []byte

func (e bytesEncoder) AppendEncoded(dst []byte) []byte { return append(dst, e...) }

func jsonString(size int) []byte {
	d := make([]byte, size)
	for i := range d {
		d[i] = 'x'
	}
	d[0], d[size-1] = '"', '"'
	return d
}

func newB(t testing.TB, p Policy, env payload.Envelope, opts ...Option) *Batcher {
	t.Helper()
	b, err := New(p, env, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// tryNext returns the batch Next would return now, or nil if Next would
// wait.
func tryNext(b *Batcher) *Batch {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.poll(b.now())
}

func mustAdd(t testing.TB, b *Batcher, recs ...source.Record) {
	t.Helper()
	if err := b.AddAll(recs); err != nil {
		t.Fatal(err)
	}
}

func mustDone(t testing.TB, b *Batcher, bt *Batch, state string) {
	t.Helper()
	var s []byte
	if state != "" {
		s = []byte(state)
	}
	if err := b.Done(bt, s); err != nil {
		t.Fatal(err)
	}
}

func ids(bt *Batch) string {
	if bt == nil {
		return "<nil>"
	}
	var s []string
	for _, r := range bt.Records {
		s = append(s, r.ID)
	}
	return strings.Join(s, ",")
}

// nextIn calls Next with a timeout, inside a synctest bubble: fake time
// jumps straight to the batch's release.
func nextIn(t testing.TB, b *Batcher, d time.Duration) (*Batch, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return b.Next(ctx)
}

func checkEvent(t testing.TB, bt *Batch) []byte {
	t.Helper()
	ev := bt.AppendEvent(nil)
	if len(ev) != bt.Size {
		t.Fatalf("batch %s: Size %d but event is %d bytes", ids(bt), bt.Size, len(ev))
	}
	return ev
}

// busyLanes counts the lanes with a sub-lane that is not idle.
func busyLanes(b *Batcher) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, l := range b.lanes {
		for _, q := range l.subs {
			if q != nil && !q.idle {
				n++
				break
			}
		}
	}
	return n
}
