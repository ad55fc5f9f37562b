package activemq

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"

	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/source"
)

// wire counts the STOMP frames a poller writes, by command, over all its
// connections, and can cut the last one.
type wire struct {
	mu     sync.Mutex
	counts map[string]int
	conns  []net.Conn
}

// wireConn parses what is written to one connection: a frame is a command
// line, headers, a body and a NUL; blank lines between frames are
// heart-beats. The poller sends no body with a NUL in it.
type wireConn struct {
	net.Conn
	w    *wire
	cmd  []byte
	body bool // skipping headers and body, to the NUL
}

func (w *wire) wrap(nc net.Conn) net.Conn {
	c := &wireConn{Conn: nc, w: w}
	w.mu.Lock()
	w.conns = append(w.conns, c)
	w.mu.Unlock()
	return c
}

func (c *wireConn) Write(b []byte) (int, error) {
	c.w.mu.Lock()
	if c.w.counts == nil {
		c.w.counts = map[string]int{}
	}
	for _, x := range b {
		switch {
		case c.body:
			c.body = x != 0
		case x == '\n':
			if cmd := strings.TrimSuffix(string(c.cmd), "\r"); cmd != "" {
				c.w.counts[cmd]++
				c.body = true
			}
			c.cmd = c.cmd[:0]
		default:
			c.cmd = append(c.cmd, x)
		}
	}
	c.w.mu.Unlock()
	return c.Conn.Write(b)
}

// n returns how many frames of a command were written.
func (w *wire) n(cmd string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.counts[cmd]
}

// cut closes the last connection, as a network failure would.
func (w *wire) cut() {
	w.mu.Lock()
	c := w.conns[len(w.conns)-1]
	w.mu.Unlock()
	c.Close()
}

// frames waits until acks ACK and nacks NACK frames were written and checks
// that no more were.
func (w *wire) frames(t *testing.T, acks, nacks int) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, func(context.Context) error {
		if w.n("ACK") < acks || w.n("NACK") < nacks {
			return fmt.Errorf("%d ACK and %d NACK frames, want %d and %d", w.n("ACK"), w.n("NACK"), acks, nacks)
		}
		return nil
	})
	if w.n("ACK") != acks || w.n("NACK") != nacks {
		t.Fatalf("%d ACK and %d NACK frames, want %d and %d", w.n("ACK"), w.n("NACK"), acks, nacks)
	}
}

// openCounted opens a poller of q with BatchSize 10 (and edit's changes)
// whose frames the returned wire counts.
func openCounted(t *testing.T, b *testenv.ActiveMQBroker, q string, edit func(*Config)) (*Poller, *wire) {
	w := &wire{}
	cfg := config(b, q)
	cfg.BatchSize = 10
	cfg.wrap = w.wrap
	if edit != nil {
		edit(&cfg)
	}
	return open(t, cfg), w
}

// sendNumbered sends n messages m00, m01, ...
func sendNumbered(t *testing.T, b *testenv.ActiveMQBroker, q string, n int) {
	c := b.Dial(t)
	for i := range n {
		send(t, c, q, fmt.Appendf(nil, "m%02d", i), false)
	}
}

// number is the i of a record sent by sendNumbered.
func number(t *testing.T, r source.Record) int {
	i, err := strconv.Atoi(strings.TrimPrefix(body(t, r), "m"))
	if err != nil {
		t.Fatal(err)
	}
	return i
}

// TestBrokerClientAckSemantics checks, with go-stomp alone, what the
// ledger relies on in ActiveMQ's ack mode client: of six messages, m3 is
// NACKed, then m4 ACKed, and m5 left unacknowledged when the connection
// closes. Exactly m3 (redelivered:true) and m5 come back: the NACK was of
// m3 alone (m0..m2 do not come back), the ACK of m4 covered m0..m2, and it
// did not cover the NACKed m3.
func TestBrokerClientAckSemantics(t *testing.T) {
	b := testenv.ActiveMQ(t)
	q := newQueue(t)
	sendNumbered(t, b, q, 6)
	c, err := stomp.Dial("tcp", b.STOMPAddr, stomp.ConnOpt.Login(testenv.ActiveMQUser, testenv.ActiveMQPassword), stomp.ConnOpt.Host("/"))
	if err != nil {
		t.Fatal(err)
	}
	sub, err := c.Subscribe("/queue/"+q, stomp.AckClient)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []*stomp.Message
	for range 6 {
		m := <-sub.C
		if m.Err != nil {
			t.Fatal(m.Err)
		}
		msgs = append(msgs, m)
	}
	if err := c.Nack(msgs[3]); err != nil {
		t.Fatal(err)
	}
	if err := c.Ack(msgs[4]); err != nil {
		t.Fatal(err)
	}
	// A receipt proves the broker took both frames without an ERROR.
	if err := c.Send("/queue/"+q+"-sync", "text/plain", nil, stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
	if err := c.Disconnect(); err != nil {
		t.Fatal(err)
	}
	p := open(t, config(b, q))
	got := map[int]bool{}
	for len(got) < 2 {
		for _, r := range poll(t, p, 1) {
			i := number(t, r)
			if i != 3 && i != 5 {
				t.Fatalf("m%02d came back", i)
			}
			if i == 3 && !decode(t, r).Redelivered {
				t.Error("the NACKed m03 came back without redelivered:true")
			}
			got[i] = true
			if err := p.Ack(context.Background(), []source.Record{r}, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	p.Close()
	assertEmpty(t, b, q)
}

// TestAckSettlesPrefix settles three batches of ten records (dealt to
// three lanes) in various orders and outcomes, as the pipeline's lanes
// and filter do, and checks the frames the poller sends and what the broker
// delivers again: exactly the failed records, with redelivered:true; no
// record done, however early it was acknowledged, comes back, even after
// the connection closes.
func TestAckSettlesPrefix(t *testing.T) {
	b := testenv.ActiveMQ(t)
	type step struct {
		recs    []int
		outcome func() error
	}
	span := func(from, to int) []int { // from..to-1
		var out []int
		for i := from; i < to; i++ {
			out = append(out, i)
		}
		return out
	}
	every := func(from, to, start int) []int { // from+start, from+start+2, ... below to
		var out []int
		for i := from + start; i < to; i += 2 {
			out = append(out, i)
		}
		return out
	}
	ok := func() error { return nil }
	failed := func() error { return source.ErrFailed }
	stopped := func() error { return source.ErrStopped }
	cases := []struct {
		name        string
		steps       []step
		acks, nacks int
		back        []int
	}{
		{name: "batches done in order", acks: 3,
			steps: []step{{span(0, 10), ok}, {span(10, 20), ok}, {span(20, 30), ok}}},
		{name: "later batches done before the first fails", acks: 1, nacks: 10, back: span(0, 10),
			steps: []step{{span(10, 20), ok}, {span(20, 30), ok}, {span(0, 10), failed}}},
		{name: "filtered out ahead of an in-flight batch that fails", acks: 2, nacks: 10, back: span(0, 10),
			steps: []step{{every(10, 30, 1), ok}, {span(0, 10), failed}, {every(10, 20, 0), ok}, {every(20, 30, 0), ok}}},
		{name: "filtered out of the batch that fails", acks: 2, nacks: 5, back: every(0, 10, 0),
			steps: []step{{every(0, 10, 1), ok}, {every(0, 10, 0), failed}, {span(10, 30), ok}}},
		{name: "partial batch failure", acks: 2, nacks: 2, back: []int{3, 7},
			steps: []step{{span(0, 10), func() error { return source.NewBatchError(nil).Failed(3, nil).Failed(7, nil) }}, {span(10, 30), ok}}},
		{name: "a batch fails after the one before it was done", acks: 2, nacks: 10, back: span(10, 20),
			steps: []step{{span(0, 10), ok}, {span(10, 20), failed}, {span(20, 30), ok}}},
		{name: "stopping", acks: 1, nacks: 20, back: span(10, 30),
			steps: []step{{span(0, 10), ok}, {span(10, 30), stopped}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q := newQueue(t)
			sendNumbered(t, b, q, 30)
			p, w := openCounted(t, b, q, nil)
			recs := poll(t, p, 30)
			for i, r := range recs {
				if number(t, r) != i {
					t.Fatalf("record %d is m%02d", i, number(t, r))
				}
			}
			for _, s := range tc.steps {
				var part []source.Record
				for _, i := range s.recs {
					part = append(part, recs[i])
				}
				if err := p.Ack(context.Background(), part, s.outcome()); err != nil {
					t.Fatal(err)
				}
			}
			w.frames(t, tc.acks, tc.nacks)
			var back []int
			for len(back) < len(tc.back) {
				got := poll(t, p, 1)
				for _, r := range got {
					if !decode(t, r).Redelivered {
						t.Errorf("m%02d came back without redelivered:true", number(t, r))
					}
					back = append(back, number(t, r))
				}
				if err := p.Ack(context.Background(), got, nil); err != nil {
					t.Fatal(err)
				}
			}
			slices.Sort(back)
			if !slices.Equal(back, tc.back) {
				t.Fatalf("came back %v, want %v", back, tc.back)
			}
			p.Close()
			assertEmpty(t, b, q)
		})
	}
}

// TestConnectionLostMidBatch: the connection is lost while the second of
// two batches is in flight. Its records, acknowledged after the loss, come
// back to the new connection with redelivered:true; the first batch's,
// acknowledged before, do not.
func TestConnectionLostMidBatch(t *testing.T) {
	b := testenv.ActiveMQ(t)
	q := newQueue(t)
	sendNumbered(t, b, q, 20)
	p, w := openCounted(t, b, q, func(cfg *Config) { cfg.ReconnectDelay = 10 * time.Millisecond })
	recs := poll(t, p, 20)
	p.mu.Lock()
	s0 := p.sess
	p.mu.Unlock()
	if err := p.Ack(context.Background(), recs[:10], nil); err != nil {
		t.Fatal(err)
	}
	w.frames(t, 1, 0)
	// Frames are handled in order: the receipt proves the ACK was.
	if err := s0.conn.Send("/queue/"+q+"-sync", "text/plain", nil, stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
	w.cut()
	testenv.EventuallyTrue(t, 20*time.Second, "reconnected", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.sess != s0
	})
	if err := p.Ack(context.Background(), recs[10:], nil); err != nil {
		t.Fatalf("acknowledging records of the lost connection: %v", err)
	}
	w.frames(t, 1, 0) // nothing sent for them
	back := poll(t, p, 10)
	var got []int
	for _, r := range back {
		got = append(got, number(t, r))
		if !decode(t, r).Redelivered {
			t.Errorf("m%02d came back without redelivered:true", number(t, r))
		}
	}
	slices.Sort(got)
	if want := []int{10, 11, 12, 13, 14, 15, 16, 17, 18, 19}; !slices.Equal(got, want) {
		t.Errorf("after the loss came %v, want %v", got, want)
	}
	if err := p.Ack(context.Background(), back, nil); err != nil {
		t.Fatal(err)
	}
	w.frames(t, 2, 0)
	p.Close()
	assertEmpty(t, b, q)
}
