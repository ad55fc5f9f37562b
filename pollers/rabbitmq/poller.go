package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/esmd/esmd/internal/backoff"
	"github.com/esmd/esmd/payload"
	"github.com/esmd/esmd/source"
)

// Poller consumes one queue and implements source.Poller. Make it with
// Open; it is safe for concurrent use.
type Poller struct {
	cfg   Config
	group string

	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the supervisor and the consumers

	// box holds the encoded records the consumers received and Poll has
	// not taken yet, each consumer's in delivery order. Consumers append
	// to it without waking Poll except for the first record (ready), so a
	// busy queue costs a wake-up per Poll rather than one per message. The
	// consumers' prefetch bounds it.
	boxMu sync.Mutex
	box   []source.Record
	ready chan struct{} // cap 1: box went from empty to not empty

	// outage gives up, making Poll fail, when the broker refused the
	// mapping or has been unreachable for longer than MaxDowntime.
	outage *source.Outage
	// failures counts consecutive Failed calls (for the requeue delay).
	failures atomic.Int64
	// lost tells the supervisor that a consumer ended (its channel closed
	// or the broker cancelled it).
	lost chan struct{}

	mu        sync.Mutex
	conn      *amqp.Connection
	consumers []*consumer // active (not retiring) consumers
	closed    bool
}

// Open connects to the broker, checks the queue and starts the first
// consumers. An error wraps ErrAuthentication, ErrAuthorization,
// ErrVHostNotFound or ErrQueueNotFound when the broker says so; refused
// credentials or access come wrapped in an *esm.DisableError (Reason
// EVENT_SOURCE_AUTHN_ERROR or EVENT_SOURCE_AUTHZ_ERROR), on which the
// pipeline disables the mapping as Lambda does.
func Open(ctx context.Context, cfg Config) (*Poller, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	conn, err := cfg.dial(ctx)
	if err != nil {
		return nil, disabling(err)
	}
	ready, err := backlog(conn, cfg.Queue)
	if err != nil {
		conn.Close()
		return nil, disabling(fmt.Errorf("queue %q in virtual host %q: %w", cfg.Queue, cfg.VHost, err))
	}
	group := payload.RabbitMQGroup(cfg.Queue, cfg.VHost)
	p := &Poller{
		cfg:    cfg,
		group:  group,
		ready:  make(chan struct{}, 1),
		outage: source.NewOutage("rabbitmq", cfg.MaxDowntime),
		lost:   make(chan struct{}, 1),
		conn:   conn,
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	// As many consumers as the backlog fills (each holds Prefetch), so a
	// mapping opened on a deep queue does not spend its first seconds
	// scaling up one consumer per ScaleInterval.
	for range min(max(1, (ready+cfg.Prefetch-1)/cfg.Prefetch), cfg.MaxConsumers) {
		c, err := p.startConsumer(conn)
		if err != nil {
			p.cancel()
			conn.Close()
			p.wg.Wait()
			return nil, disabling(fmt.Errorf("consume queue %q in virtual host %q: %w", cfg.Queue, cfg.VHost, err))
		}
		p.consumers = append(p.consumers, c)
	}
	p.wg.Add(1)
	go p.supervise(conn)
	return p, nil
}

// Poll returns the deliveries that arrived, at least one, waiting for the
// first until ctx is done. Batching them (BatchSize, the window, the linger
// that keeps a window of 0 from invoking per message) is the batcher's. It
// returns an error when the broker has been unreachable for longer than
// Config.MaxDowntime.
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

// put hands a consumer's record to Poll.
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

// take removes the records from the box and returns them, without those
// read on a channel that has closed since they were delivered: the broker
// has requeued them and will deliver them again, so invoking the function
// with them now would only make duplicates.
func (p *Poller) take() []source.Record {
	p.boxMu.Lock()
	recs := make([]source.Record, len(p.box))
	copy(recs, p.box)
	clear(p.box)
	p.box = p.box[:0]
	p.boxMu.Unlock()
	var last *consumer
	dead := false
	kept := recs[:0]
	for _, r := range recs {
		if c, ok := r.Meta.(*consumer); ok && c != last {
			last, dead = c, c.isDead()
		}
		if !dead {
			kept = append(kept, r)
		}
	}
	clear(recs[len(kept):])
	return kept
}

var errClosed = errors.New("rabbitmq: poller closed")

// consumerSeq numbers consumers (channels) across every poller.
var consumerSeq atomic.Int64

// Ack implements source.Poller: finished messages are acked (Done), failed
// ones nacked with requeue (Failed).
func (p *Poller) Ack(ctx context.Context, recs []source.Record, outcome error) error {
	if errors.Is(outcome, source.ErrStopped) {
		return p.settle(recs, false) // requeued at once, without the failure delay
	}
	return source.AckSplit(ctx, recs, outcome, p.Done, p.Failed)
}

// Done acks records: delivered, or filtered out. Acks of records read on a
// channel that has closed since are dropped: the broker has requeued those
// deliveries already and delivers them again (at least once).
func (p *Poller) Done(_ context.Context, recs []source.Record) error {
	if len(recs) > 0 {
		p.failures.Store(0)
	}
	return p.settle(recs, true)
}

// Failed hands records back to the broker with basic.nack requeue=true,
// after a delay that doubles with each consecutive failure (from
// Config.RequeueDelay to MaxRequeueDelay; a Done resets it), so that a
// function failing on a message does not spin through it as fast as the
// broker can redeliver. The deliveries stay unacked in the meantime: the
// consumer's prefetch holds them, which also slows the queue down as a
// failing function should.
//
// Why requeue and not reject to a dead-letter exchange: AWS retries a
// failed RabbitMQ batch "until success or the messages expire" and leaves
// dead-lettering to the broker (spec MQ-4). A requeued message comes back
// with redelivered=true, is dead-lettered by the queue's own policy when
// its TTL passes, and on a quorum queue with a delivery-limit is
// dead-lettered by the broker once the limit is reached; rejecting with
// requeue=false would dead-letter (or drop) it on the first failure, which
// AWS never does.
func (p *Poller) Failed(_ context.Context, recs []source.Record) error {
	n := p.failures.Add(1)
	delay := p.cfg.RequeueDelay
	for i := int64(1); i < n && delay < p.cfg.MaxRequeueDelay; i++ {
		delay *= 2
	}
	delay = min(delay, p.cfg.MaxRequeueDelay)
	if delay <= 0 {
		return p.settle(recs, false)
	}
	recs = append([]source.Record(nil), recs...)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil // the broker requeues them as the connection closes
	}
	p.wg.Add(1) // under p.mu: Close waits only after it set closed
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-p.ctx.Done():
			return // closing: the broker requeues them with the channel
		}
		if err := p.settle(recs, false); err != nil {
			p.cfg.Log.Warn("rabbitmq nack", "queue", p.cfg.Queue, "err", err)
		}
	}()
	return nil
}

func (p *Poller) settle(recs []source.Record, ack bool) error {
	if len(recs) == 0 {
		return nil
	}
	// Group by consumer, keeping the delivery order within each.
	var order []*consumer
	tags := map[*consumer][]uint64{}
	for _, r := range recs {
		c, ok := r.Meta.(*consumer)
		tag, err := strconv.ParseUint(r.Seq, 10, 64)
		if !ok || err != nil {
			return fmt.Errorf("rabbitmq: record %q was not read by this poller", r.ID)
		}
		if _, seen := tags[c]; !seen {
			order = append(order, c)
		}
		tags[c] = append(tags[c], tag)
	}
	var errs []error
	for _, c := range order {
		if err := c.settle(tags[c], ack); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close stops consuming and closes the connection: the broker requeues
// every delivery that was not acked. It waits for the poller's goroutines.
func (p *Poller) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	conn := p.conn
	p.mu.Unlock()
	p.cancel()
	var err error
	if conn != nil {
		// Bounded: a broker that went away must not hold up disabling.
		err = conn.CloseDeadline(time.Now().Add(2 * time.Second))
		if errors.Is(err, amqp.ErrClosed) {
			err = nil
		}
	}
	p.wg.Wait()
	return err
}

// Consumers returns how many consumers are active (for tests and logs).
func (p *Poller) Consumers() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.consumers)
}

// supervise owns the connection: it scales consumers with the backlog,
// reopens consumers whose channel closed, and reconnects when the
// connection is lost.
func (p *Poller) supervise(conn *amqp.Connection) {
	defer p.wg.Done()
	tick := time.NewTicker(p.cfg.ScaleInterval)
	defer tick.Stop()
	idle := 0
	for {
		closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	connected:
		for {
			select {
			case <-p.ctx.Done():
				return
			case err := <-closed:
				if p.ctx.Err() != nil {
					return
				}
				p.cfg.Log.Warn("rabbitmq connection lost; reconnecting", "queue", p.cfg.Queue, "err", err)
				break connected
			case <-p.lost:
				// A consumer's channel closed (or the broker cancelled it,
				// as when the queue is deleted) on a live connection.
				if conn.IsClosed() {
					continue // the close notification follows
				}
				if err := p.reopenConsumers(conn); err != nil {
					p.cfg.Log.Warn("rabbitmq consumer lost; retrying", "queue", p.cfg.Queue, "err", err)
					p.outage.Down(disabling(err))
					if !p.sleep(p.retryDelay()) {
						return
					}
					select { // try again
					case p.lost <- struct{}{}:
					default:
					}
				}
			case <-tick.C:
				idle = p.scale(conn, idle)
			}
		}
		p.dropConsumers()
		conn = p.reconnect()
		if conn == nil {
			return
		}
	}
}

// reopenConsumers replaces consumers whose channel is gone, keeping at
// least one.
func (p *Poller) reopenConsumers(conn *amqp.Connection) error {
	p.mu.Lock()
	live := p.consumers[:0]
	for _, c := range p.consumers {
		if !c.isDead() {
			live = append(live, c)
		}
	}
	p.consumers = live
	need := len(live) == 0
	p.mu.Unlock()
	if !need {
		return nil
	}
	c, err := p.startConsumer(conn)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.consumers = append(p.consumers, c)
	p.mu.Unlock()
	p.outage.Up()
	return nil
}

// scale adds a consumer when messages are ready and every consumer holds
// its full prefetch (the pipeline has more room than the consumers can
// fill), and retires one after three measurements of an empty queue in a
// row. It returns the count of those.
func (p *Poller) scale(conn *amqp.Connection, idle int) int {
	ready, err := backlog(conn, p.cfg.Queue)
	if err != nil {
		p.cfg.Log.Debug("rabbitmq backlog", "queue", p.cfg.Queue, "err", err)
		return idle
	}
	p.mu.Lock()
	n := len(p.consumers)
	saturated := true
	for _, c := range p.consumers {
		saturated = saturated && c.outstanding() >= p.cfg.Prefetch
	}
	p.mu.Unlock()
	switch {
	case ready > 0 && saturated && n < p.cfg.MaxConsumers:
		c, err := p.startConsumer(conn)
		if err != nil {
			p.cfg.Log.Debug("rabbitmq scale up", "queue", p.cfg.Queue, "err", err)
			return 0
		}
		p.mu.Lock()
		p.consumers = append(p.consumers, c)
		p.mu.Unlock()
		p.cfg.Log.Debug("rabbitmq consumers", "queue", p.cfg.Queue, "n", n+1, "backlog", ready)
		return 0
	case ready == 0 && n > 1:
		if idle+1 < 3 {
			return idle + 1
		}
		p.mu.Lock()
		c := p.consumers[len(p.consumers)-1]
		p.consumers = p.consumers[:len(p.consumers)-1]
		p.mu.Unlock()
		c.retire()
		p.cfg.Log.Debug("rabbitmq consumers", "queue", p.cfg.Queue, "n", n-1)
		return 0
	}
	return 0
}

// dropConsumers forgets the consumers of a lost connection: their
// deliveries are back in the queue.
func (p *Poller) dropConsumers() {
	p.mu.Lock()
	cs := p.consumers
	p.consumers = nil
	p.mu.Unlock()
	for _, c := range cs {
		c.markDead()
	}
}

// reconnect dials with backoff until it has a connection and a consumer,
// or the poller is closed (nil).
func (p *Poller) reconnect() *amqp.Connection {
	bo := backoff.New(p.cfg.ReconnectDelay, p.cfg.MaxReconnectDelay)
	for {
		if !p.sleep(bo.Next()) {
			return nil
		}
		conn, err := p.cfg.dial(p.ctx)
		if err != nil {
			p.outage.Down(disabling(err))
			p.cfg.Log.Warn("rabbitmq reconnect failed", "queue", p.cfg.Queue, "err", err)
			continue
		}
		c, err := p.startConsumer(conn)
		if err != nil {
			conn.Close()
			p.outage.Down(disabling(fmt.Errorf("consume queue %q in virtual host %q: %w", p.cfg.Queue, p.cfg.VHost, err)))
			p.cfg.Log.Warn("rabbitmq consume failed", "queue", p.cfg.Queue, "err", err)
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			conn.Close()
			return nil
		}
		p.conn = conn
		p.consumers = []*consumer{c}
		p.mu.Unlock()
		p.outage.Up()
		p.cfg.Log.Info("rabbitmq reconnected", "queue", p.cfg.Queue)
		return conn
	}
}

func (p *Poller) retryDelay() time.Duration { return p.cfg.MaxReconnectDelay / 4 }

// sleep waits d, or returns false when the poller is closed.
func (p *Poller) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// startConsumer opens a channel with a prefetch of Config.Prefetch and
// starts consuming on it.
func (p *Poller) startConsumer(conn *amqp.Connection) (*consumer, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, classify(err)
	}
	if err := ch.Qos(p.cfg.Prefetch, 0, false); err != nil {
		ch.Close()
		return nil, classify(err)
	}
	// The tag is also the prefix of record IDs, which must not repeat
	// when a mapping's poller is opened again: hence a process-wide count.
	name := p.cfg.Name
	if name == "" {
		name = "esmd"
	}
	tag := fmt.Sprintf("%s-%d", name, consumerSeq.Add(1))
	deliveries, err := ch.Consume(p.cfg.Queue, tag, false, false, false, false, nil)
	if err != nil {
		ch.Close()
		return nil, classify(err)
	}
	c := &consumer{p: p, ch: ch, tag: tag, state: map[uint64]uint8{}}
	p.wg.Add(1)
	go c.run(deliveries)
	return c, nil
}

// Delivery states in consumer.state.
const (
	pending     uint8 = iota // in the pipeline
	doneUnacked              // done, waiting for an earlier delivery to finish
	ackedAlone               // done and acked on its own (behind a pending one)
)

// consumer is one channel consuming the queue.
type consumer struct {
	p   *Poller
	ch  *amqp.Channel
	tag string

	mu sync.Mutex
	// order holds the delivery tags not settled yet, in delivery order
	// (from head); state says where each is.
	order   []uint64
	head    int
	state   map[uint64]uint8
	dead    bool // channel closed: the broker requeued what was unacked
	retired bool // cancelled: close the channel once everything is settled
}

// run hands deliveries to Poll as records until the channel closes or is
// cancelled.
func (c *consumer) run(deliveries <-chan amqp.Delivery) {
	defer c.p.wg.Done()
	for d := range deliveries {
		c.p.put(c.take(&d))
	}
	// The deliveries channel closes when the channel or connection closes,
	// or when the consumer is cancelled (by retire, or by the broker when
	// the queue is deleted).
	c.mu.Lock()
	retired := c.retired
	if !retired {
		c.dead = true
	}
	c.mu.Unlock()
	if retired {
		return
	}
	c.ch.Close()
	select {
	case c.p.lost <- struct{}{}:
	default:
	}
}

// take tracks a delivery and returns its record. A message no event can
// carry (over 6 MB) goes on too: the pipeline drops it, acked, as AWS does
// (spec MQ-6; the descriptor's Oversize).
func (c *consumer) take(d *amqp.Delivery) source.Record {
	rec := c.record(d)
	c.mu.Lock()
	c.order = append(c.order, d.DeliveryTag)
	c.state[d.DeliveryTag] = pending
	c.mu.Unlock()
	return rec
}

// record encodes a delivery. Its Meta is the consumer (channel) it came
// on and its Seq the delivery tag there; its ID is "<consumer tag>-<delivery
// tag>", one allocation that Seq shares.
func (c *consumer) record(d *amqp.Delivery) source.Record {
	msg := payload.RabbitMQMessage{Properties: properties(d), Redelivered: d.Redelivered, Data: d.Body}
	id := string(strconv.AppendUint(append(append(make([]byte, 0, len(c.tag)+21), c.tag...), '-'), d.DeliveryTag, 10))
	return source.Record{
		Lane:    c.p.cfg.Queue,
		ID:      id,
		Seq:     id[len(c.tag)+1:],
		Arrival: time.Now(),
		Group:   c.p.group,
		Data:    payload.AppendRabbitMQ(make([]byte, 0, 420+len(d.Body)*4/3), &msg),
		Meta:    c,
	}
}

// outstanding is how many deliveries the consumer handed out that are not
// acked or nacked yet.
func (c *consumer) outstanding() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.order) - c.head
}

func (c *consumer) isDead() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dead
}

func (c *consumer) markDead() {
	c.mu.Lock()
	c.dead = true
	c.mu.Unlock()
}

// retire cancels the consumer; its channel closes once the deliveries it
// handed out are settled, so they are acked on the channel they came on.
func (c *consumer) retire() {
	c.mu.Lock()
	c.retired = true
	empty := c.head == len(c.order)
	c.mu.Unlock()
	if err := c.ch.Cancel(c.tag, false); err != nil {
		c.p.cfg.Log.Debug("rabbitmq cancel consumer", "tag", c.tag, "err", err)
	}
	if empty {
		c.ch.Close()
	}
}

// settle acks (ack) or nacks with requeue the given deliveries.
//
// Acks are cumulative where they can be: the consumer acks with
// multiple=true up to the last delivery before the first one still in the
// pipeline, one frame for a whole batch. A done delivery behind an
// unfinished one is acked on its own at once (records finish in delivery
// order except for filtered ones, which are done before the batch their
// predecessors are in): an acknowledged record is never redelivered, even
// if the earlier one never finishes. The cumulative ack then covers only
// deliveries not acked yet (RabbitMQ refuses a tag acked twice). A nack is
// sent at once for its delivery alone.
func (c *consumer) settle(tags []uint64, ack bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead {
		return nil // the broker requeued these when the channel closed
	}
	for _, t := range tags {
		s, ok := c.state[t]
		if !ok || s != pending {
			continue // settled already
		}
		if ack {
			c.state[t] = doneUnacked
			continue
		}
		delete(c.state, t)
		if err := c.ch.Nack(t, false, true); err != nil {
			return c.channelError(err)
		}
	}
	var cut uint64
	for c.head < len(c.order) {
		t := c.order[c.head]
		s, ok := c.state[t]
		if ok && s == pending {
			break
		}
		if ok {
			if s == doneUnacked {
				cut = t
			}
			delete(c.state, t)
		}
		c.head++
	}
	if ack {
		for _, t := range tags {
			if c.state[t] == doneUnacked {
				c.state[t] = ackedAlone
				if err := c.ch.Ack(t, false); err != nil {
					return c.channelError(err)
				}
			}
		}
	}
	if c.head > 1024 && c.head*2 > len(c.order) {
		c.order = append(c.order[:0], c.order[c.head:]...)
		c.head = 0
	}
	if cut != 0 {
		if err := c.ch.Ack(cut, true); err != nil {
			return c.channelError(err)
		}
	}
	if c.retired && c.head == len(c.order) {
		c.ch.Close()
	}
	return nil
}

// channelError turns a failed ack on a closed channel into nothing: the
// broker requeued its deliveries. Called with c.mu held.
func (c *consumer) channelError(err error) error {
	if errors.Is(err, amqp.ErrClosed) || c.ch.IsClosed() {
		c.dead = true
		return nil
	}
	return fmt.Errorf("rabbitmq: settle deliveries on %s: %w", c.tag, err)
}
