package kinesis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/esmd/esmd/pollers/stream"
)

// SubscribeAPI is the part of the Kinesis client enhanced fan-out uses.
// When the EventSourceArn is a stream consumer ARN and the API implements
// it (*kinesis.Client does), shards are read with SubscribeToShard
// through that consumer instead of GetRecords.
type SubscribeAPI interface {
	SubscribeToShard(ctx context.Context, in *awskinesis.SubscribeToShardInput, o ...func(*awskinesis.Options)) (*awskinesis.SubscribeToShardOutput, error)
}

// efoWait is how long one Read waits for an event of a subscription
// before it answers with an empty page (the subscription stays open; the
// reader's wait for the next Read is short).
const efoWait = time.Second

// errShortSubscription is a subscription that ended as soon as it began;
// it is retried with backoff.
var errShortSubscription = errors.New("subscription ended at once")

// efo is the stream.Client of a stream read through a registered consumer
// (enhanced fan-out). Listing is the shared client's; an "iterator" is a
// position token, and Read takes events from one subscription per shard,
// opened at that position and kept while reads continue from it. A
// subscription ends after 5 minutes on AWS: the next Read opens another
// after the last record read.
type efo struct {
	*client
	sub      SubscribeAPI
	consumer string

	mu   sync.Mutex
	subs map[string]*subscription
}

type subscription struct {
	opened time.Time
	next   string // the token the next Read continues from
	events *awskinesis.SubscribeToShardEventStream
	cancel context.CancelFunc
}

// token encodes a position as an EFO "iterator".
func token(pos stream.Position) string {
	return fmt.Sprintf("efo|%s|%s|%d", pos.Type, pos.Seq, pos.Timestamp.UnixNano())
}

func parseToken(tok string) (*types.StartingPosition, error) {
	parts := strings.Split(tok, "|")
	if len(parts) != 4 || parts[0] != "efo" {
		return nil, fmt.Errorf("kinesis: not an enhanced fan-out position: %q", tok)
	}
	sp := &types.StartingPosition{Type: types.ShardIteratorType(parts[1])}
	if parts[2] != "" {
		sp.SequenceNumber = aws.String(parts[2])
	}
	if sp.Type == types.ShardIteratorTypeAtTimestamp {
		ns, err := strconv.ParseInt(parts[3], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("kinesis: enhanced fan-out position %q: %w", tok, err)
		}
		sp.Timestamp = aws.Time(time.Unix(0, ns))
	}
	return sp, nil
}

// Pushes implements stream.Pusher: Read waits for the subscription's
// events.
func (e *efo) Pushes() bool { return true }

func (e *efo) Iterator(_ context.Context, _ string, pos stream.Position) (string, error) {
	return token(pos), nil
}

func (e *efo) Read(ctx context.Context, shard, iter string, _ int) (stream.Page, error) {
	s, err := e.subscription(ctx, shard, iter)
	if err != nil {
		return stream.Page{}, err
	}
	t := time.NewTimer(efoWait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return stream.Page{}, ctx.Err()
	case <-t.C:
		return stream.Page{Next: iter}, nil
	case ev, ok := <-s.events.Events():
		if !ok {
			err := s.events.Err()
			e.drop(shard)
			if err != nil {
				return stream.Page{}, fmt.Errorf("kinesis: SubscribeToShard %s: %w", shard, err)
			}
			if time.Since(s.opened) < efoWait {
				// Ended at once: back off before subscribing again.
				return stream.Page{}, fmt.Errorf("kinesis: SubscribeToShard %s: %w", shard, errShortSubscription)
			}
			return stream.Page{Next: iter}, nil // ended (after 5 minutes on AWS): subscribe again
		}
		v, ok := ev.(*types.SubscribeToShardEventStreamMemberSubscribeToShardEvent)
		if !ok {
			return stream.Page{Next: iter}, nil
		}
		page := stream.Page{Next: iter}
		if v.Value.MillisBehindLatest != nil {
			page.Behind, page.BehindKnown = time.Duration(*v.Value.MillisBehindLatest)*time.Millisecond, true
		}
		if n := len(v.Value.Records); n > 0 {
			page.Records = e.records(shard, v.Value.Records)
			page.Next = token(stream.Position{Type: stream.AfterSequenceNumber, Seq: page.Records[n-1].Seq})
		}
		end := aws.ToString(v.Value.ContinuationSequenceNumber) == "" && len(v.Value.ChildShards) > 0
		if !end && len(page.Records) == 0 && e.isClosed(shard) {
			// An empty event on a shard the listing says is closed: check
			// its end with GetRecords (kinesis-mock never sends the final
			// event with ChildShards that Kinesis sends).
			var err error
			if page, end, err = e.checkEnd(ctx, shard, iter, page); err != nil {
				return stream.Page{}, err
			}
		}
		if end {
			page.Next = "" // the shard is closed and read to its end
			e.drop(shard)
			return page, nil
		}
		e.mu.Lock()
		s.next = page.Next
		e.mu.Unlock()
		return page, nil
	}
}

// checkEnd reads a closed shard once with GetRecords from the position
// iter stands for: no records and no next iterator is its end; records
// are returned as the page.
func (e *efo) checkEnd(ctx context.Context, shard, iter string, page stream.Page) (stream.Page, bool, error) {
	sp, err := parseToken(iter)
	if err != nil {
		return page, false, err
	}
	it, err := e.client.Iterator(ctx, shard, stream.Position{Type: string(sp.Type), Seq: aws.ToString(sp.SequenceNumber), Timestamp: aws.ToTime(sp.Timestamp)})
	if err != nil {
		return page, false, err
	}
	p, err := e.client.Read(ctx, shard, it, 10000)
	if err != nil {
		return page, false, err
	}
	if len(p.Records) > 0 {
		n := len(p.Records)
		page.Records = p.Records
		page.Next = token(stream.Position{Type: stream.AfterSequenceNumber, Seq: p.Records[n-1].Seq})
	}
	return page, len(p.Records) == 0 && p.Next == "", nil
}

// isClosed reports whether the last listing showed the shard closed.
func (e *efo) isClosed(shard string) bool {
	e.client.mu.Lock()
	defer e.client.mu.Unlock()
	return e.client.closed[shard]
}

// subscription returns the shard's subscription continuing from iter,
// opening one (and closing an older one) when there is none.
func (e *efo) subscription(ctx context.Context, shard, iter string) (*subscription, error) {
	e.mu.Lock()
	s := e.subs[shard]
	e.mu.Unlock()
	if s != nil && s.next == iter {
		return s, nil
	}
	e.drop(shard)
	sp, err := parseToken(iter)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	sub := e.sub
	if o, ok := sub.(interface{ Options() awskinesis.Options }); ok {
		// One client per subscription: smithy-go's event stream codec
		// (one per client, with a shared buffer) is not safe for
		// concurrent streams (the race detector shows it, v1.28.9).
		sub = awskinesis.New(o.Options())
	}
	out, err := sub.SubscribeToShard(sctx, &awskinesis.SubscribeToShardInput{ConsumerARN: aws.String(e.consumer),
		ShardId: aws.String(shard), StartingPosition: sp})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("kinesis: SubscribeToShard %s: %w", shard, err)
	}
	s = &subscription{opened: time.Now(), next: iter, events: out.GetStream(), cancel: cancel}
	e.mu.Lock()
	e.subs[shard] = s
	e.mu.Unlock()
	return s, nil
}

// drop closes a shard's subscription.
func (e *efo) drop(shard string) {
	e.mu.Lock()
	s := e.subs[shard]
	delete(e.subs, shard)
	e.mu.Unlock()
	if s != nil {
		s.cancel()
		s.events.Close()
	}
}

// close closes every subscription.
func (e *efo) close() {
	e.mu.Lock()
	var shards []string
	for id := range e.subs {
		shards = append(shards, id)
	}
	e.mu.Unlock()
	for _, id := range shards {
		e.drop(id)
	}
}

func (e *efo) Classify(err error) stream.ErrorKind {
	var riu *types.ResourceInUseException
	if errors.As(err, &riu) || errors.Is(err, errShortSubscription) {
		// Another subscription of the consumer on the shard is still
		// open (AWS allows one): wait and subscribe again.
		return stream.Throttled
	}
	return e.client.Classify(err)
}
