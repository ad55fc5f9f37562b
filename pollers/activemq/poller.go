package activemq

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-stomp/stomp/v3"

	"github.com/esmd/esmd/internal/backoff"
	"github.com/esmd/esmd/payload"
	"github.com/esmd/esmd/source"
)

// Poller consumes one queue over STOMP and implements source.Poller. Make
// it with Open; it is safe for concurrent use.
type Poller struct {
	cfg   Config
	lanes []string
	dest  string

	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	boxMu sync.Mutex
	box   []source.Record
	ready chan struct{} // cap 1: box went from empty to not empty

	// outage gives up, making Poll fail, when the broker refused the
	// credentials or has been unreachable for longer than MaxDowntime.
	outage *source.Outage

	n    atomic.Int64 // records handed out (IDs and lanes)
	next int          // the endpoint to try first when reconnecting

	mu     sync.Mutex
	sess   *session
	closed bool
}

// session is one connection and its subscription.
type session struct {
	conn *stomp.Conn
	sub  *stomp.Subscription
	dead atomic.Bool // lost: the broker redelivers what was not acked
	acks ledger      // what the subscription delivered, and how it ended
}

// delivery is a record's Meta: the session its message came on and the
// message's position in the session's ledger.
type delivery struct {
	s   *session
	pos int64
}

// sessions numbers record IDs across pollers, so they never repeat when
// a mapping's poller is opened again.
var sessions atomic.Int64

// Open connects to the first endpoint that answers and subscribes to the
// queue. Refused credentials come wrapped in an *esm.DisableError (Reason
// EVENT_SOURCE_AUTHN_ERROR), on which the pipeline disables the mapping.
func Open(ctx context.Context, cfg Config) (*Poller, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Name == "" {
		cfg.Name = "esmd"
	}
	cfg.Name = fmt.Sprintf("%s-%d", cfg.Name, sessions.Add(1))
	p := &Poller{
		cfg:    cfg,
		dest:   "/queue/" + cfg.Queue,
		ready:  make(chan struct{}, 1),
		outage: source.NewOutage("activemq", cfg.MaxDowntime),
	}
	for i := range cfg.Lanes {
		if i == 0 {
			p.lanes = append(p.lanes, cfg.Queue)
		} else {
			p.lanes = append(p.lanes, cfg.Queue+"#"+strconv.Itoa(i))
		}
	}
	s, err := p.connect(ctx)
	if err != nil {
		return nil, disabling(err)
	}
	p.sess = s
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.wg.Add(1)
	go p.run(s)
	return p, nil
}

// connect tries each endpoint once, from p.next, and subscribes on the
// first that accepts the login.
func (p *Poller) connect(ctx context.Context) (*session, error) {
	var errs []error
	n := len(p.cfg.Endpoints)
	for i := range n {
		e := p.cfg.Endpoints[(p.next+i)%n]
		conn, err := p.cfg.dial(ctx, e)
		if err != nil {
			if errors.Is(err, ErrAuthentication) {
				return nil, err
			}
			errs = append(errs, err)
			continue
		}
		sub, err := conn.Subscribe(p.dest, stomp.AckClient,
			stomp.SubscribeOpt.Header("activemq.prefetchSize", strconv.Itoa(p.cfg.Prefetch)))
		if err != nil {
			_ = conn.MustDisconnect()
			errs = append(errs, fmt.Errorf("subscribe to %s on %s: %w", p.dest, e, err))
			continue
		}
		p.next = (p.next + i) % n
		return &session{conn: conn, sub: sub}, nil
	}
	return nil, errors.Join(errs...)
}

// run hands the session's messages to Poll and, when the connection is
// lost, reconnects (failing over between the endpoints) until Close.
func (p *Poller) run(s *session) {
	defer p.wg.Done()
	for {
		for msg := range s.sub.C {
			if msg.Err != nil {
				p.cfg.Log.Debug("activemq subscription error", "queue", p.cfg.Queue, "err", msg.Err)
				break
			}
			p.put(p.record(s, msg))
		}
		s.dead.Store(true)
		_ = s.conn.MustDisconnect()
		if p.ctx.Err() != nil {
			return
		}
		p.cfg.Log.Warn("activemq connection lost; reconnecting", "queue", p.cfg.Queue)
		if s = p.reconnect(); s == nil {
			return
		}
	}
}

func (p *Poller) reconnect() *session {
	bo := backoff.New(p.cfg.ReconnectDelay, p.cfg.MaxReconnectDelay)
	for {
		if backoff.Sleep(p.ctx, bo.Next()) != nil {
			return nil
		}
		p.next++ // start with the other instance: the one we were on failed
		s, err := p.connect(p.ctx)
		if err != nil {
			p.outage.Down(disabling(err))
			p.cfg.Log.Warn("activemq reconnect failed", "queue", p.cfg.Queue, "err", err)
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			_ = s.conn.MustDisconnect()
			return nil
		}
		p.sess = s
		p.outage.Up()
		p.mu.Unlock()
		p.cfg.Log.Info("activemq reconnected", "queue", p.cfg.Queue, "endpoint", p.cfg.Endpoints[p.next%len(p.cfg.Endpoints)])
		return s
	}
}

// Poll returns the messages that arrived, at least one, waiting for the
// first until ctx is done. It fails when the broker has been unreachable
// for longer than MaxDowntime, or refused the credentials.
func (p *Poller) Poll(ctx context.Context) ([]source.Record, error) {
	for {
		if recs := p.take(); len(recs) > 0 {
			return recs, nil
		}
		select {
		case <-p.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-p.outage.Done():
			return nil, p.outage.Err()
		case <-p.ctx.Done():
			return nil, errClosed
		}
	}
}

var errClosed = errors.New("activemq: poller closed")

func (p *Poller) put(rec source.Record) {
	p.boxMu.Lock()
	p.box = append(p.box, rec)
	n := len(p.box)
	p.boxMu.Unlock()
	if n != 1 {
		return
	}
	select {
	case p.ready <- struct{}{}:
	default:
	}
}

// take empties the box, without the messages of a lost connection: the
// broker delivers those again.
func (p *Poller) take() []source.Record {
	p.boxMu.Lock()
	recs := p.box
	p.box = nil
	p.boxMu.Unlock()
	kept := recs[:0]
	for _, r := range recs {
		if !r.Meta.(*delivery).s.dead.Load() {
			kept = append(kept, r)
		}
	}
	return kept
}

// record encodes a message; its lane deals a batch's worth of records to
// each of the Lanes in turn (spec MQ-3: 5 invocations at once).
func (p *Poller) record(s *session, msg *stomp.Message) source.Record {
	n := p.n.Add(1) - 1
	id := p.cfg.Name + "-" + strconv.FormatInt(n, 10)
	now := time.Now()
	m := Message(msg.Header, msg.Body, now)
	return source.Record{
		Lane:    p.lanes[int(n/int64(p.cfg.BatchSize))%len(p.lanes)],
		ID:      id,
		Seq:     id[len(p.cfg.Name)+1:],
		Arrival: now,
		Data:    payload.AppendActiveMQ(make([]byte, 0, 400+len(msg.Body)*4/3), &m),
		Meta:    &delivery{s: s, pos: s.acks.add(msg)},
	}
}

// Ack implements source.Poller: finished messages (delivered or filtered
// out) are acknowledged, failed ones NACKed, which the broker redelivers
// with redelivered:true after its redelivery delay and, past
// maximumRedeliveries, moves to its DLQ. Messages of a stopping mapping
// (source.ErrStopped) are NACKed too, so that they come back at once (after
// the broker's redelivery delay) rather than when the connection closes;
// like any NACK that counts towards maximumRedeliveries. Messages of a
// lost connection are the broker's again already.
//
// Acknowledging is cumulative (ack mode client): one ACK frame covers
// every message settled before it, and is sent when no message delivered
// earlier is still in flight (see ledger).
func (p *Poller) Ack(_ context.Context, recs []source.Record, outcome error) error {
	if errors.Is(outcome, source.ErrStopped) {
		return p.settle(nil, recs)
	}
	return p.settle(source.Split(recs, outcome))
}

// settle hands the records' outcomes to their sessions' ledgers, one call
// per session (the records of a batch share one, but for a reconnection
// between their deliveries).
func (p *Poller) settle(done, failed []source.Record) error {
	type group struct {
		s            *session
		done, failed []int64
	}
	var groups []group
	var errs []error
	add := func(recs []source.Record, isDone bool) {
		for _, r := range recs {
			d, ok := r.Meta.(*delivery)
			if !ok {
				errs = append(errs, fmt.Errorf("activemq: record %q was not read by this poller", r.ID))
				continue
			}
			i := slices.IndexFunc(groups, func(g group) bool { return g.s == d.s })
			if i < 0 {
				i = len(groups)
				groups = append(groups, group{s: d.s})
			}
			if isDone {
				groups[i].done = append(groups[i].done, d.pos)
			} else {
				groups[i].failed = append(groups[i].failed, d.pos)
			}
		}
	}
	add(done, true)
	add(failed, false)
	for _, g := range groups {
		if g.s.dead.Load() {
			continue
		}
		err := g.s.acks.settle(g.s.conn, g.done, g.failed)
		if err != nil && !errors.Is(err, stomp.ErrAlreadyClosed) && !g.s.dead.Load() {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close unsubscribes and disconnects (bounded: a broker that went away
// must not hold up disabling); the broker hands back what was not acked.
func (p *Poller) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	s := p.sess
	p.mu.Unlock()
	p.cancel()
	var err error
	if s != nil && !s.dead.Load() {
		if err = s.conn.Disconnect(); err != nil {
			_ = s.conn.MustDisconnect()
			if strings.Contains(err.Error(), "closed") {
				err = nil
			}
		}
	}
	p.wg.Wait()
	return err
}
