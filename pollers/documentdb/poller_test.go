package documentdb_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/mongotest"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/pollers/documentdb"
	"github.com/esmd/esmd/pollers/pollertest"
	"github.com/esmd/esmd/source"
)

// TestConformance runs the poller suite against the shared mongotest
// server, one new collection per subtest, from TRIM_HORIZON.
func TestConformance(t *testing.T) {
	s := testenv.Mongo(t)
	pollertest.Run(t, pollertest.Harness{
		Features: pollertest.Features{Ordered: true},
		Setup: func(t *testing.T) pollertest.Source {
			name := collName(t)
			c := coll(t, s, name)
			st := openStore(t)
			return pollertest.Source{
				Open: func(t *testing.T) source.Poller { return open(t, config(s, st, name)) },
				Produce: func(t *testing.T, key, b string) {
					insert(t, c, bson.D{{Key: "key", Value: key}, {Key: "body", Value: b}})
				},
				Body: func(t *testing.T, r source.Record) string { return body(t, r) },
			}
		},
	})
}

// TestOneLaneInStreamOrder: every record is on the stream's lane, in the
// server's order, with the resume token as ID and Seq and the cluster time
// as Arrival.
func TestOneLaneInStreamOrder(t *testing.T) {
	s := testenv.Mongo(t)
	name := collName(t)
	insert(t, coll(t, s, name), docs("d", 250)...)
	p := open(t, config(s, openStore(t), name))
	recs := pollN(t, p, 250, 20*time.Second)
	for i, r := range recs {
		if want := fmt.Sprintf("d-%04d", i); body(t, r) != want {
			t.Fatalf("record %d is %s, want %s", i, body(t, r), want)
		}
		if r.Lane != db+"."+name || r.ID == "" || r.Seq != r.ID || r.ID != decode(t, r).Event.ID.Data {
			t.Fatalf("record %d: lane %q, id %q, seq %q", i, r.Lane, r.ID, r.Seq)
		}
		if r.Arrival.IsZero() || time.Since(r.Arrival) > time.Hour {
			t.Fatalf("record %d arrived %v", i, r.Arrival)
		}
	}
	if lag := p.Lag(); len(lag) != 1 || lag[db+"."+name] > time.Hour {
		t.Errorf("Lag() = %v", lag)
	}
}

// TestWholeDatabase: without a collection, the stream of the whole
// database, every collection's events in order.
func TestWholeDatabase(t *testing.T) {
	s := private(t, mongotest.Options{})
	a, b := coll(t, s, "a"), coll(t, s, "b")
	insert(t, a, docs("a", 2)...)
	insert(t, b, docs("b", 2)...)
	insert(t, a, docs("c", 1)...)
	insert(t, client(t, s).Database("other").Collection("x"), docs("other", 1)...)
	p := open(t, config(s, openStore(t), ""))
	recs := pollN(t, p, 5, 10*time.Second)
	var got []string
	for _, r := range recs {
		c := decode(t, r)
		got = append(got, c.Event.NS.Coll+":"+body(t, r))
		if r.Lane != db {
			t.Errorf("lane %q, want %q", r.Lane, db)
		}
	}
	want := []string{"a:a-0000", "a:a-0001", "b:b-0000", "b:b-0001", "a:c-0000"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	pollNone(t, p, 500*time.Millisecond) // two MaxAwaitTimes: another database's event would have come
}

// TestLatest: a LATEST mapping reads what is written after it opened, and
// a restart before its first event was done still reads what was written
// in between (it checkpointed where it started).
func TestLatest(t *testing.T) {
	s := testenv.Mongo(t)
	name := collName(t)
	c := coll(t, s, name)
	insert(t, c, docs("before", 3)...)
	st := openStore(t)
	cfg := config(s, st, name)
	cfg.StartingPosition = documentdb.Latest
	p := open(t, cfg)
	insert(t, c, docs("after", 2)...)
	if got := bodies(t, pollN(t, p, 2, 10*time.Second)); !slices.Equal(got, []string{"after-0000", "after-0001"}) {
		t.Fatalf("got %v", got)
	}
	p.Close()
	insert(t, c, docs("between", 2)...)
	p = open(t, cfg)
	if got := bodies(t, pollN(t, p, 4, 10*time.Second)); !slices.Equal(got, []string{"after-0000", "after-0001", "between-0000", "between-0001"}) {
		t.Fatalf("after a restart with nothing done: got %v", got)
	}
}

// TestTrimHorizonStartsAtOldestRetained: TRIM_HORIZON on a server that
// keeps 10 events reads from the oldest it retains.
func TestTrimHorizonStartsAtOldestRetained(t *testing.T) {
	s := private(t, mongotest.Options{MaxEvents: 10})
	c := coll(t, s, "c")
	for i := range 25 {
		insert(t, c, bson.D{{Key: "body", Value: fmt.Sprintf("t-%04d", i)}})
	}
	oldest, ok := s.OldestRetained()
	if !ok {
		t.Fatal("no event retained")
	}
	p := open(t, config(s, openStore(t), "c"))
	recs := pollN(t, p, 10, 10*time.Second)
	if got := body(t, recs[0]); got != "t-0015" {
		t.Errorf("first event %s, want t-0015", got)
	}
	var ct struct {
		TS struct{ T, I uint32 } `json:"$timestamp"`
	}
	decodeJSON(t, decode(t, recs[0]).Event.ClusterTime, &ct)
	if got := (bson.Timestamp{T: ct.TS.T, I: ct.TS.I}); got != oldest {
		t.Errorf("first event at %v, the oldest retained is %v", got, oldest)
	}
	pollNone(t, p, 500*time.Millisecond)
}

// TestTrimHorizonUntrimmed: on a server that trimmed nothing, TRIM_HORIZON
// reads every event, in the first probe.
func TestTrimHorizonUntrimmed(t *testing.T) {
	s := private(t, mongotest.Options{})
	insert(t, coll(t, s, "c"), docs("u", 5)...)
	p := open(t, config(s, openStore(t), "c"))
	if got := bodies(t, pollN(t, p, 5, 10*time.Second)); got[0] != "u-0000" {
		t.Errorf("got %v", got)
	}
	if n := s.CommandCount("aggregate"); n != 2 {
		t.Errorf("%d aggregates, want 2 (one probe, then the stream)", n)
	}
}

// TestAtTimestamp: AT_TIMESTAMP starts at the events of the timestamp's
// second, whatever came before.
func TestAtTimestamp(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	tick := func() { mu.Lock(); now = now.Add(time.Second); mu.Unlock() }
	s := private(t, mongotest.Options{Now: clock})
	c := coll(t, s, "c")
	insert(t, c, docs("s0", 2)...)
	tick()
	at := clock()
	insert(t, c, docs("s1", 2)...)
	tick()
	insert(t, c, docs("s2", 1)...)
	cfg := config(s, openStore(t), "c")
	cfg.StartingPosition, cfg.Timestamp = documentdb.AtTimestamp, at.Add(300*time.Millisecond)
	p := open(t, cfg)
	if got := bodies(t, pollN(t, p, 3, 10*time.Second)); !slices.Equal(got, []string{"s1-0000", "s1-0001", "s2-0000"}) {
		t.Errorf("got %v", got)
	}
	pollNone(t, p, 500*time.Millisecond)
}

// TestFullDocumentModes: an update event carries the change only by
// default, and the looked-up document too with UpdateLookup.
func TestFullDocumentModes(t *testing.T) {
	s := testenv.Mongo(t)
	for _, mode := range []string{"Default", "UpdateLookup"} {
		t.Run(mode, func(t *testing.T) {
			name := collName(t)
			c := coll(t, s, name)
			insert(t, c, bson.D{{Key: "_id", Value: 1}, {Key: "n", Value: 1}})
			if _, err := c.UpdateOne(context.Background(), bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: 2}}}}); err != nil {
				t.Fatal(err)
			}
			cfg := config(s, openStore(t), name)
			cfg.FullDocument = mode
			recs := pollN(t, open(t, cfg), 2, 10*time.Second)
			u := decode(t, recs[1]).Event
			if u.OperationType != "update" || string(u.UpdateDescription) != `{"updatedFields":{"n":2},"removedFields":[],"truncatedArrays":[]}` {
				t.Fatalf("update event %s", recs[1].Data)
			}
			full := string(u.FullDocument)
			if mode == "Default" && full != "" || mode == "UpdateLookup" && full != `{"_id":1,"n":2}` {
				t.Errorf("%s: fullDocument %q", mode, full)
			}
		})
	}
}

// TestResumableErrorIsResumed: a getMore failing with a resumable error is
// resumed by the driver: nothing lost, nothing twice.
func TestResumableErrorIsResumed(t *testing.T) {
	s := private(t, mongotest.Options{})
	c := coll(t, s, "c")
	insert(t, c, docs("r", 5)...)
	p := open(t, config(s, openStore(t), "c"))
	got := pollN(t, p, 5, 10*time.Second)
	aggregates := s.CommandCount("aggregate")
	s.InjectResumableError()
	insert(t, c, docs("s", 5)...)
	got = append(got, pollN(t, p, 5, 10*time.Second)...)
	want := append(bodyList("r", 5), bodyList("s", 5)...)
	if b := bodies(t, got); !slices.Equal(b, want) {
		t.Errorf("got %v, want %v", b, want)
	}
	// The getMore that meets the error may be the one after the new
	// events (one already waiting for data when the error was injected
	// brings them): count the resumes once the poller has asked again.
	pollNone(t, p, 500*time.Millisecond)
	if n := s.CommandCount("aggregate"); n != aggregates+1 {
		t.Errorf("%d aggregates after the error, want 1 (the driver's resume)", n-aggregates)
	}
}

// TestOtherErrorReopens: an error the driver does not resume (a getMore
// failing with a code without the resumable label) makes the poller reopen
// the stream after the last event read.
func TestOtherErrorReopens(t *testing.T) {
	s := private(t, mongotest.Options{})
	c := coll(t, s, "c")
	insert(t, c, docs("r", 3)...)
	cfg := config(s, openStore(t), "c")
	var logs syncBuffer
	cfg.Log = slog.New(slog.NewTextHandler(&logs, nil))
	p := open(t, cfg)
	got := pollN(t, p, 3, 10*time.Second)
	// The poller may already wait in a getMore that the fail point does not
	// reach: it returns "s". Events inserted after "s" was read need a
	// getMore issued after the fail point was set, so by the time "u" is
	// read the error has happened and the stream was reopened.
	s.FailNextGetMore(8000) // not resumable: no label
	insert(t, c, docs("s", 3)...)
	got = append(got, pollN(t, p, 3, 10*time.Second)...)
	insert(t, c, docs("u", 3)...)
	got = append(got, pollN(t, p, 3, 10*time.Second)...)
	want := append(append(bodyList("r", 3), bodyList("s", 3)...), bodyList("u", 3)...)
	if b := bodies(t, got); !slices.Equal(b, want) {
		t.Errorf("got %v, want %v", b, want)
	}
	if l := logs.String(); !strings.Contains(l, "reopening") || !strings.Contains(l, "8000") {
		t.Errorf("the poller did not log reopening the stream after the error:\n%s", l)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestHistoryLostDisables: a stream whose position falls out of the
// change stream's history ends with an *esm.DisableError, on a getMore
// and on opening from a checkpoint too old.
func TestHistoryLostDisables(t *testing.T) {
	s := private(t, mongotest.Options{})
	c := coll(t, s, "c")
	insert(t, c, docs("h", 3)...)
	st := openStore(t)
	cfg := config(s, st, "c")
	p := open(t, cfg)
	recs := pollN(t, p, 3, 10*time.Second)
	if err := p.Ack(context.Background(), recs[:1], nil); err != nil {
		t.Fatal(err)
	}
	s.TrimHistory()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := p.Poll(ctx)
	checkDisabled(t, err, documentdb.ReasonHistoryLost, "ChangeStreamHistoryLost")
	if !errors.Is(err, documentdb.ErrHistoryLost) {
		t.Errorf("%v does not wrap ErrHistoryLost", err)
	}
	p.Close()
	_, err = documentdb.Open(ctx, cfg)
	checkDisabled(t, err, documentdb.ReasonHistoryLost, "create a new event source mapping")
}

// TestWrongCredentialsDisable: credentials the server refuses end Open
// with an *esm.DisableError EVENT_SOURCE_AUTHN_ERROR, and so does a stream
// that loses its connection and cannot log in again.
func TestWrongCredentialsDisable(t *testing.T) {
	s := private(t, mongotest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := config(s, openStore(t), "c")
	cfg.Password = "wrong"
	_, err := documentdb.Open(ctx, cfg)
	checkDisabled(t, err, documentdb.ReasonAuthN, "Authentication failed")
	if !errors.Is(err, documentdb.ErrAuthentication) {
		t.Errorf("%v does not wrap ErrAuthentication", err)
	}

	p := open(t, config(s, openStore(t), "c"))
	s.SetCredentials(testenv.MongoUser, "changed")
	s.DropConnections()
	_, err = p.Poll(ctx)
	checkDisabled(t, err, documentdb.ReasonAuthN, "Authentication failed")
}

func checkDisabled(t *testing.T, err error, reason, msg string) {
	t.Helper()
	var de *esm.DisableError
	if !errors.As(err, &de) {
		t.Fatalf("error %v (%T), want an *esm.DisableError", err, err)
	}
	if de.Reason != reason || !strings.Contains(de.Error(), msg) {
		t.Errorf("DisableError %q: %q, want %q with %q", de.Reason, de.Error(), reason, msg)
	}
}

// TestInvalidateGoesOn: dropping the collection delivers its drop and
// invalidate events, and the stream goes on with the collection made
// again, after a restart too (from the invalidate's checkpoint).
func TestInvalidateGoesOn(t *testing.T) {
	s := private(t, mongotest.Options{})
	c := coll(t, s, "c")
	insert(t, c, docs("a", 1)...)
	st := openStore(t)
	p := open(t, config(s, st, "c"))
	if err := c.Drop(context.Background()); err != nil {
		t.Fatal(err)
	}
	insert(t, c, docs("b", 1)...)
	recs := pollN(t, p, 4, 10*time.Second)
	var ops []string
	for _, r := range recs {
		ops = append(ops, decode(t, r).Event.OperationType)
	}
	if !slices.Equal(ops, []string{"insert", "drop", "invalidate", "insert"}) || body(t, recs[3]) != "b-0000" {
		t.Fatalf("operations %v", ops)
	}
	if err := p.Ack(context.Background(), recs[:3], nil); err != nil {
		t.Fatal(err)
	}
	p.Close()
	p = open(t, config(s, st, "c"))
	if got := bodies(t, pollN(t, p, 1, 10*time.Second)); got[0] != "b-0000" {
		t.Errorf("after a restart at the invalidate event: %v", got)
	}
}

// TestTLS: TLS is on by default (the URI does not mention it), trusting
// the CA bundle of CAFile; tls=false in the URI turns it off.
func TestTLS(t *testing.T) {
	s := private(t, mongotest.Options{TLS: true})
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, s.CACert(), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config(s, openStore(t), "c")
	cfg.URI, cfg.CAFile = "mongodb://"+s.Addr()+"/?replicaSet=rs0", ca
	p := open(t, cfg)
	w := tlsColl(t, s)
	insert(t, w, docs("tls", 2)...)
	if got := bodies(t, pollN(t, p, 2, 10*time.Second)); got[1] != "tls-0001" {
		t.Errorf("got %v", got)
	}

	// Without the CA, the server's certificate is not trusted.
	cfg.CAFile, cfg.ServerSelectionTimeout = "", time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The API shows AWS's phrase; the log gets the certificate error.
	_, err := documentdb.Open(ctx, cfg)
	var pr *source.Problem
	if !errors.As(err, &pr) || err.Error() != source.PhraseConnection || !strings.Contains(pr.Err.Error(), "certificate") {
		t.Errorf("open without the CA: %v", err)
	}
}

// TestConnectionErrorsLookAlike: whatever listens (or not) at a cluster's
// address, the error an API caller sees is AWS's one phrase.
func TestConnectionErrorsLookAlike(t *testing.T) {
	t.Parallel()
	pollertest.Unreachable(t, []string{"tls=true:", "tls=false:"}, 10*time.Second, func(ctx context.Context, scheme, addr string) (io.Closer, error) {
		return documentdb.Open(ctx, documentdb.Config{URI: "mongodb://" + addr + "/?" + scheme[:len(scheme)-1], Database: "db", Mapping: "m",
			Positions: openStore(t), ServerSelectionTimeout: time.Second})
	})
}

func bodyList(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%04d", prefix, i)
	}
	return out
}

// TestCoalescedCheckpoint: with a CheckpointInterval the position of the
// done events is written by the writer, without a Close, within about an
// interval, and a restart resumes after it.
func TestCoalescedCheckpoint(t *testing.T) {
	s := testenv.Mongo(t)
	name := collName(t)
	insert(t, coll(t, s, name), docs("c", 20)...)
	st := openStore(t)
	cfg := config(s, st, name)
	cfg.CheckpointInterval = 50 * time.Millisecond
	p := open(t, cfg)
	recs := pollN(t, p, 20, 10*time.Second)
	for i := 0; i < 20; i += 5 {
		if err := p.Ack(context.Background(), recs[i:i+5], nil); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	testenv.Eventually(t, 5*time.Second, func(ctx context.Context) error {
		if pos, _, _ := st.Position(ctx, cfg.Mapping, db+"."+name); pos != recs[19].Seq {
			return fmt.Errorf("checkpoint %q, want %q", pos, recs[19].Seq)
		}
		return nil
	})
}

// TestServerGone: a cluster that stays unreachable makes Poll fail after
// MaxDowntime (the pipeline then reports it and opens the poller again),
// and Close is prompt all the same.
func TestServerGone(t *testing.T) {
	s, err := mongotest.Start(mongotest.Options{Username: testenv.MongoUser, Password: testenv.MongoPassword})
	if err != nil {
		t.Fatal(err)
	}
	cfg := config(s, openStore(t), "c")
	cfg.MaxDowntime, cfg.ServerSelectionTimeout = time.Second, 200*time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, err := documentdb.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	start := time.Now()
	if _, err := p.Poll(ctx); err == nil || ctx.Err() != nil {
		t.Fatalf("poll: %v", err)
	} else {
		t.Logf("after %v: %v", time.Since(start).Round(time.Millisecond), err)
	}
	start = time.Now()
	p.Close()
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("Close took %v", d)
	}
}
