package documentdb_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/esmd/esmd/checkpoint/pgstore"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/pollers/documentdb"
	"github.com/esmd/esmd/source"
)

// TestLeasedChangeStream: two workers on one PostgreSQL store; the first
// reads the change stream, the second waits in OpenLeased. When the first
// closes (releasing the lease), the second takes the stream from its
// checkpoint. A replay's reset takes the lease away: Poll then answers
// ErrLeaseMoved, and nothing the worker writes afterwards is kept.
func TestLeasedChangeStream(t *testing.T) {
	ctx := context.Background()
	s := testenv.Mongo(t)
	name := collName(t)
	c := coll(t, s, name)
	st, err := pgstore.Open(ctx, testenv.PostgreSQLDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cfg := config(s, st, name)
	if err := st.SaveMapping(ctx, cfg.Mapping, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	lease := func(w string) documentdb.Lease { return documentdb.Lease{Leases: st, Worker: w, TTL: time.Second} }

	a, err := documentdb.OpenLeased(ctx, cfg, lease("a"))
	if err != nil {
		t.Fatal(err)
	}
	type opened struct {
		p   source.Poller
		err error
	}
	bc := make(chan opened, 1)
	bctx, cancelB := context.WithCancel(ctx)
	defer cancelB()
	go func() {
		p, err := documentdb.OpenLeased(bctx, cfg, lease("b"))
		bc <- opened{p, err}
	}()

	insert(t, c, docs("d", 3)...)
	recs := pollN(t, a, 3, 10*time.Second)
	if err := a.Ack(ctx, recs, nil); err != nil {
		t.Fatal(err)
	}
	// b stands by while a holds the stream (a second: b tries every third
	// of it).
	testenv.Consistently(t, time.Second, func(context.Context) error {
		if len(bc) > 0 {
			return errors.New("b opened the stream while a held it")
		}
		return nil
	})
	insert(t, c, docs("e", 2)...)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	var b opened
	select {
	case b = <-bc:
	case <-time.After(30 * time.Second):
		t.Fatal("b did not take the stream over")
	}
	if b.err != nil {
		t.Fatal(b.err)
	}
	defer b.p.Close()
	if got := bodies(t, pollN(t, b.p, 2, 10*time.Second)); !slices.Equal(got, []string{"e-0000", "e-0001"}) {
		t.Fatalf("b read %v after a's checkpoint", got)
	}
	if h, ok := b.p.(source.LaneHolder); !ok || !h.Holds(documentdb.Lane(db, name)) {
		t.Fatal("b does not hold its lane")
	}

	// A replay resets the positions and takes the lease.
	if err := st.ResetPositions(ctx, cfg.Mapping, map[string]string{documentdb.Lane(db, name): "reset"}); err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := b.p.Poll(pctx); !errors.Is(err, documentdb.ErrLeaseMoved) {
		t.Fatalf("Poll after the reset: %v", err)
	}
	b.p.Close()
	if pos, _, _ := st.Position(ctx, cfg.Mapping, documentdb.Lane(db, name)); pos != "reset" {
		t.Errorf("position after the reset: %q", pos)
	}
}
