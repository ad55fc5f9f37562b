package sqs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/uuid"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/backoff"
	"github.com/esmd/esmd/internal/sqsurl"
	"github.com/esmd/esmd/payload"
	"github.com/esmd/esmd/source"
)

// ErrClosed is returned by Poll once Close was called.
var ErrClosed = errors.New("sqs: poller closed")

// Receive parameters of every ReceiveMessage call (spec SQS-1).
const (
	waitTimeSeconds = 20
	maxMessages     = 10
	// maxVisibility is SQS's limit on how long after its receive a message
	// can be kept invisible.
	maxVisibility = 12 * time.Hour
	// recvTimeout bounds one ReceiveMessage call: the long poll and the
	// SDK's retries.
	recvTimeout = waitTimeSeconds*time.Second + 10*time.Second
	// readAhead is how many batches (of max(BatchSize, 10)) per receiver
	// the poller holds before its receivers wait (see waitRoom).
	readAhead = 4
)

// Option configures a Poller.
type Option func(*options)

type options struct {
	log        *slog.Logger
	minRecv    int
	startRecv  int
	maxRecv    int
	growEvery  time.Duration
	ackTimeout time.Duration
	backoffMin time.Duration
	backoffMax time.Duration
	now        func() time.Time
	wait       int32 // WaitTimeSeconds; tests shorten it
}

// WithLogger sets the poller's logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithReceivers sets the number of concurrent long-polling receivers: the
// floor they shrink to on an empty queue, how many start, and the ceiling
// they grow to with a backlog (defaults 2, 5 and 100, AWS's starting five
// and lower bound two; ScalingConfig.MaximumConcurrency lowers the ceiling).
func WithReceivers(floor, start, ceiling int) Option {
	return func(o *options) { o.minRecv, o.startRecv, o.maxRecv = floor, start, ceiling }
}

// WithAckTimeout bounds how long Done, Failed and Close keep retrying SQS
// (default 30 s).
func WithAckTimeout(d time.Duration) Option { return func(o *options) { o.ackTimeout = d } }

// WithBackoff sets the delays between retries of failed SQS calls
// (defaults 100 ms and 10 s).
func WithBackoff(min, max time.Duration) Option {
	return func(o *options) { o.backoffMin, o.backoffMax = min, max }
}

// Queue names one SQS queue, parsed from its ARN.
type Queue struct {
	ARN     string
	Region  string
	Account string
	Name    string
}

// FIFO reports whether the queue is a FIFO queue.
func (q Queue) FIFO() bool { return strings.HasSuffix(q.Name, ".fifo") }

// ParseARN parses arn:<partition>:sqs:<region>:<account>:<name>.
func ParseARN(arn string) (Queue, error) {
	a, ok := esm.ParseARN(arn)
	if !ok || a.Service != "sqs" || a.Region == "" || a.Account == "" || a.Resource == "" || strings.Contains(a.Resource, ":") {
		return Queue{}, fmt.Errorf("not an SQS queue ARN: %q", arn)
	}
	return Queue{ARN: arn, Region: a.Region, Account: a.Account, Name: a.Resource}, nil
}

// Poller reads one queue for one mapping. It implements source.Poller.
type Poller struct {
	client  *awssqs.Client
	q       Queue
	url     string
	vt      time.Duration // the queue's VisibilityTimeout
	o       options
	log     *slog.Logger
	fifo    bool
	batch   int // BatchSize: the read-ahead is counted in batches
	recvIn  awssqs.ReceiveMessageInput
	maxRecv int
	minRecv int

	out    chan []source.Record
	base   context.Context // Open's context without its cancellation: SQS calls
	ctx    context.Context // cancelled by Close: the receive loops and the extender
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed chan struct{}
	once   sync.Once

	mu        sync.Mutex
	receivers int
	lastGrow  time.Time
	held      map[*message]struct{}
	room      chan struct{}         // closed (and replaced) when held messages are let go
	order     uint64                // FIFO: receive order of the last message held
	groups    map[string]*fifoGroup // FIFO: the groups with held messages
}

// fifoGroup is what a FIFO poller knows of one message group while it holds
// some of its messages.
type fifoGroup struct {
	// msgs are the group's held messages in receive order.
	msgs []*message
	// failedAt is the order of the group's first failed message since
	// it had no held message (0: none): messages after it are handed back
	// with it, never deleted (see settle).
	failedAt uint64
}

// message is the Meta of a record: what acknowledging it needs.
type message struct {
	handle   string
	received time.Time
	// FIFO: the message group, the receive order, and whether the
	// pipeline reported it done while an earlier message of its group was
	// still held (it is deleted once those are).
	group string
	order uint64
	done  bool
	// deadline is when SQS makes the message visible again as things
	// stand; extended is whether esmd moved it past received+vt.
	deadline time.Time
	extended bool
}

// Open resolves the queue of mapping m (GetQueueUrl with QueueName and
// QueueOwnerAWSAccountId from the ARN, endpoint from cfg), reads its
// VisibilityTimeout and starts the receivers. Close stops them.
func Open(ctx context.Context, cfg aws.Config, m *esm.Mapping, opts ...Option) (*Poller, error) {
	o := options{minRecv: 2, startRecv: 5, maxRecv: 100, growEvery: 200 * time.Millisecond,
		ackTimeout: 30 * time.Second, backoffMin: 100 * time.Millisecond, backoffMax: 10 * time.Second, now: time.Now, wait: waitTimeSeconds}
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		o.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if m.Config.EventSourceArn == nil {
		return nil, errors.New("sqs: mapping has no EventSourceArn")
	}
	q, err := ParseARN(*m.Config.EventSourceArn)
	if err != nil {
		return nil, err
	}
	// Connections: every receiver long-polls on its own, and deletes and
	// visibility changes run beside them (up to readAhead batches per
	// receiver in flight). The SDK's default pool keeps 10 idle connections per
	// host; past that, connections are closed after each call and dialled
	// anew (about 40 per 1,000 messages at 8 receivers against fauxqs),
	// which costs the SQS server more than the calls themselves.
	idle := (readAhead+1)*o.maxRecv + ackParallel
	client := awssqs.NewFromConfig(cfg, func(so *awssqs.Options) {
		if bc, ok := so.HTTPClient.(*awshttp.BuildableClient); ok {
			so.HTTPClient = bc.WithTransportOptions(func(tr *http.Transport) {
				tr.MaxIdleConnsPerHost = max(tr.MaxIdleConnsPerHost, idle)
				tr.MaxIdleConns = max(tr.MaxIdleConns, idle)
			})
		}
	})
	url, err := QueueURL(ctx, client, q)
	if err != nil {
		return nil, source.AWSProblem(err)
	}
	attrs, err := client.GetQueueAttributes(ctx, &awssqs.GetQueueAttributesInput{QueueUrl: &url,
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameVisibilityTimeout}})
	if err != nil {
		return nil, source.AWSProblem(fmt.Errorf("sqs: read attributes of %s: %w", q.ARN, err))
	}
	vt, _ := strconv.Atoi(attrs.Attributes[string(types.QueueAttributeNameVisibilityTimeout)])

	p := &Poller{client: client, q: q, url: url, vt: time.Duration(vt) * time.Second, o: o,
		log: o.log.With("queue", q.ARN), fifo: q.FIFO(), batch: 10, out: make(chan []source.Record),
		closed: make(chan struct{}), held: map[*message]struct{}{}, room: make(chan struct{}), groups: map[string]*fifoGroup{}}
	if m.Config.BatchSize != nil {
		p.batch = int(*m.Config.BatchSize)
	}
	p.minRecv, p.maxRecv = o.minRecv, o.maxRecv
	start := o.startRecv
	if sc := m.Config.ScalingConfig; sc != nil && sc.MaximumConcurrency != nil && *sc.MaximumConcurrency > 0 {
		mc := int(*sc.MaximumConcurrency)
		p.maxRecv = min(p.maxRecv, mc)
		// AWS does not optimise down past its starting five when a
		// maximum is set (spec SQS-2).
		p.minRecv = max(p.minRecv, min(5, mc))
	}
	p.minRecv = max(1, min(p.minRecv, p.maxRecv))
	start = max(p.minRecv, min(start, p.maxRecv))
	p.recvIn = awssqs.ReceiveMessageInput{
		QueueUrl:                    &p.url,
		MaxNumberOfMessages:         maxMessages,
		WaitTimeSeconds:             o.wait,
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
		MessageAttributeNames:       []string{"All"},
	}
	p.base = context.WithoutCancel(ctx)
	p.ctx, p.cancel = context.WithCancel(p.base)
	p.mu.Lock()
	for range start {
		p.spawnLocked()
	}
	p.mu.Unlock()
	if p.vt > 0 {
		p.wg.Add(1)
		go p.extendLoop()
	}
	p.log.Debug("sqs poller open", "url", url, "visibilityTimeout", p.vt, "receivers", start)
	return p, nil
}

// QueueURL resolves a queue's URL with GetQueueUrl (sqsurl.Lookup). A
// queue that does not exist gives an error for which IsNonExistentQueue is
// true.
func QueueURL(ctx context.Context, client *awssqs.Client, q Queue) (string, error) {
	return sqsurl.Lookup(ctx, client, q.ARN)
}

// spawnLocked starts one more receiver; p.mu is held.
func (p *Poller) spawnLocked() {
	p.receivers++
	go p.receive()
}

// Receivers returns how many receivers are running.
func (p *Poller) Receivers() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.receivers
}

// grow adds a receiver when the queue has a backlog (a full receive) and
// the pipeline was waiting for records, at most one per growEvery.
func (p *Poller) grow() {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.o.now()
	if p.receivers >= p.maxRecv || now.Sub(p.lastGrow) < p.o.growEvery || p.ctx.Err() != nil {
		return
	}
	p.lastGrow = now
	p.spawnLocked()
}

// shrink ends the calling receiver after an empty long poll unless the
// floor is reached; it reports whether the receiver must exit, having
// taken it off the count already (under the lock, so that receivers
// shrinking at once never go below the floor).
func (p *Poller) shrink() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.receivers <= p.minRecv {
		return false
	}
	p.receivers--
	return true
}

// receive is one receiver: long poll, hand the records to Poll, repeat.
//
// A long poll in progress is not cancelled when the poller closes: SQS (and
// fauxqs, which does not notice that the client went away) may still hand
// it messages, which would then stay invisible for their whole visibility
// timeout with nobody holding them. The receive is left to end (20 s at
// most) and what it brings is released at once. Close therefore does not
// wait for receivers; each ends by itself, bounded by recvTimeout.
func (p *Poller) receive() {
	counted := true // false once shrink took this receiver off the count
	defer func() {
		if counted {
			p.mu.Lock()
			p.receivers--
			p.mu.Unlock()
		}
	}()
	in := p.recvIn
	b := p.newBackoff()
	for p.ctx.Err() == nil {
		if !p.waitRoom() {
			return
		}
		if p.fifo && in.ReceiveRequestAttemptId == nil {
			// A FIFO receive whose answer was lost (network error) keeps
			// its messages, and their groups, locked for the visibility
			// timeout; retried with the same attempt id, SQS answers the
			// lost messages again.
			in.ReceiveRequestAttemptId = aws.String(uuid.NewString())
		}
		ctx, cancel := context.WithTimeout(p.base, recvTimeout)
		out, err := p.client.ReceiveMessage(ctx, &in)
		cancel()
		if err == nil {
			in.ReceiveRequestAttemptId = nil
		}
		if err != nil {
			if p.ctx.Err() != nil {
				return
			}
			d := b.Next()
			p.log.Warn("ReceiveMessage failed; retrying", "err", err, "retryIn", d)
			if !sleep(p.ctx, d) {
				return
			}
			continue
		}
		b.Reset()
		if len(out.Messages) == 0 {
			if p.shrink() {
				counted = false
				return
			}
			continue
		}
		recs := p.records(out.Messages)
		if recs == nil {
			return // closed: released
		}
		select {
		case p.out <- recs:
			// Poll was already waiting: the pipeline keeps up, and a full
			// receive says there is more to read.
			if len(out.Messages) == maxMessages {
				p.grow()
			}
			continue
		default:
		}
		select {
		case p.out <- recs:
		case <-p.ctx.Done():
			p.release(p.take(recs))
			return
		}
	}
}

// waitRoom waits until the poller holds few enough messages for one more
// receive; false when the poller closed meanwhile.
//
// The read-ahead is bounded by what the receivers could feed to
// invocations, readAhead (4) batches per receiver: the batch being
// filled, the one being invoked, and two to cover the moments when
// invocations fall behind the receives (with two, BenchmarkThroughput's
// receivers waited here often enough on a loaded machine to leave the SQS
// server idle, and esmd fell to 0.7 of the plain loop). Messages received
// far ahead of their invocation would only sit invisible (and count a
// receive each time they are released), and some SQS servers (fauxqs)
// slow down with many messages in flight.
func (p *Poller) waitRoom() bool {
	for {
		p.mu.Lock()
		if len(p.held)+maxMessages <= readAhead*max(p.receivers, 1)*max(p.batch, maxMessages) {
			p.mu.Unlock()
			return true
		}
		ch := p.room
		p.mu.Unlock()
		select {
		case <-ch:
		case <-p.ctx.Done():
			return false
		}
	}
}

// release makes messages visible again at once (the poller is closing).
func (p *Poller) release(msgs []*message) {
	if len(msgs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(p.base, p.o.ackTimeout)
	defer cancel()
	if err := p.changeVisibility(ctx, msgs, make([]int32, len(msgs))); err != nil {
		p.log.Warn("releasing messages of a closed poller", "count", len(msgs), "err", err)
	}
}

// records converts received messages to records and starts holding them;
// once the poller is closed it releases them instead and returns nil.
func (p *Poller) records(msgs []types.Message) []source.Record {
	now := p.o.now()
	recs := make([]source.Record, len(msgs))
	held := make([]*message, len(msgs))
	for i := range msgs {
		m := &msgs[i]
		a := m.Attributes
		sm := payload.SQSMessage{
			MessageID:     aws.ToString(m.MessageId),
			ReceiptHandle: aws.ToString(m.ReceiptHandle),
			Body:          aws.ToString(m.Body),
			Attributes: payload.SQSAttributes{
				ApproximateReceiveCount:          a["ApproximateReceiveCount"],
				SentTimestamp:                    a["SentTimestamp"],
				SenderID:                         a["SenderId"],
				ApproximateFirstReceiveTimestamp: a["ApproximateFirstReceiveTimestamp"],
				SequenceNumber:                   a["SequenceNumber"],
				MessageGroupID:                   a["MessageGroupId"],
				MessageDeduplicationID:           a["MessageDeduplicationId"],
				AWSTraceHeader:                   a["AWSTraceHeader"],
				DeadLetterQueueSourceArn:         a["DeadLetterQueueSourceArn"],
			},
			MD5OfBody:              aws.ToString(m.MD5OfBody),
			MD5OfMessageAttributes: aws.ToString(m.MD5OfMessageAttributes),
			EventSourceARN:         p.q.ARN,
			AWSRegion:              p.q.Region,
		}
		for name, v := range m.MessageAttributes {
			sm.MessageAttributes = append(sm.MessageAttributes, payload.SQSMessageAttribute{
				Name: name, DataType: aws.ToString(v.DataType), StringValue: aws.ToString(v.StringValue),
				BinaryValue: v.BinaryValue, StringListValues: v.StringListValues, BinaryListValues: v.BinaryListValues,
			})
		}
		h := &message{handle: sm.ReceiptHandle, received: now, deadline: now.Add(p.vt), group: sm.Attributes.MessageGroupID}
		held[i] = h
		// Sized for the record: body, receipt handle and about 1 KB of
		// keys and attributes, so the encoding does not grow it.
		buf := make([]byte, 0, len(sm.Body)+len(sm.ReceiptHandle)+1024)
		r := source.Record{ID: sm.MessageID, Data: payload.AppendSQS(buf, &sm), Meta: h}
		if ms, err := strconv.ParseInt(sm.Attributes.SentTimestamp, 10, 64); err == nil {
			r.Arrival = time.UnixMilli(ms)
		}
		if p.fifo {
			r.Key, r.Seq = sm.Attributes.MessageGroupID, sm.Attributes.SequenceNumber
		}
		recs[i] = r
	}
	p.mu.Lock()
	if p.ctx.Err() != nil {
		p.mu.Unlock()
		p.release(held)
		return nil
	}
	for _, h := range held {
		p.held[h] = struct{}{}
		if p.fifo {
			p.order++
			h.order = p.order
			g := p.groups[h.group]
			if g == nil {
				g = &fifoGroup{}
				p.groups[h.group] = g
			}
			g.msgs = append(g.msgs, h)
		}
	}
	p.mu.Unlock()
	return recs
}

// Poll implements source.Poller: it waits for a receive and returns its
// records. One Poll is one receive: without a batching window the batcher
// makes one batch of what one receive returned, as AWS does (spec SQS-1).
func (p *Poller) Poll(ctx context.Context) ([]source.Record, error) {
	select {
	case recs := <-p.out:
		return recs, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-p.closed:
		return nil, ErrClosed
	}
}

// newBackoff returns the retry delay of SQS calls: exponential from
// WithBackoff's min to its max, jittered on the upper half so that
// receivers that failed together do not retry together.
func (p *Poller) newBackoff() *backoff.Backoff {
	b := backoff.New(p.o.backoffMin, p.o.backoffMax)
	b.Jitter = true
	return b
}

// sleep waits d or until ctx is done; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool { return backoff.Sleep(ctx, d) == nil }
