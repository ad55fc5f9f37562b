package bench

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esmd/esmd/payload"
)

// rawKafka is the plain franz-go loop: a consumer group member polls, each
// partition's records go to that partition's goroutine, which sends up to
// BatchSize records (waiting up to Window for more) as one Lambda Kafka
// event, and marks them for the next autocommit once the function
// succeeded. One batch per partition is in flight, as with Lambda.
func rawKafka(ctx context.Context, s *RawSpec, inv *rawInvoker) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.Endpoints...), kgo.ConsumerGroup("raw-"+s.Name),
		kgo.ConsumeTopics(s.Name), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.AutoCommitMarks(), kgo.AutoCommitInterval(time.Second))
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		_ = cl.CommitMarkedOffsets(cctx)
		cancel()
		cl.Close()
	}()
	env := payload.SelfManagedKafka(bootstrapString(s.Endpoints))
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	parts := map[int32]chan []*kgo.Record{}
	lane := func(p int32) chan []*kgo.Record {
		if ch := parts[p]; ch != nil {
			return ch
		}
		ch := make(chan []*kgo.Record, 4)
		parts[p] = ch
		wg.Add(1)
		go func() {
			defer wg.Done()
			kafkaPartition(ctx, s, inv, env, cl, p, ch)
		}()
		return ch
	}
	for ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		if fs.IsClientClosed() {
			return nil
		}
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) == 0 {
				return
			}
			select {
			case lane(p.Partition) <- p.Records:
			case <-ctx.Done():
			}
		})
	}
	return ctx.Err()
}

// kafkaPartition invokes the records of one partition in order.
func kafkaPartition(ctx context.Context, s *RawSpec, inv *rawInvoker, env payload.Envelope, cl *kgo.Client, p int32, ch <-chan []*kgo.Record) {
	// The event around the records: encoded once, records go between.
	shell := env.Append(nil, payload.KafkaGroup(s.Name, p), [][]byte{{'@'}})
	at := slices.Index(shell, '@')
	head, tail := shell[:at], shell[at+1:]
	var buf []*kgo.Record
	var ev []byte
	for {
		if len(buf) == 0 {
			select {
			case rs := <-ch:
				buf = append(buf, rs...)
			case <-ctx.Done():
				return
			}
		}
		if len(buf) < s.BatchSize && s.Window > 0 {
			deadline := time.NewTimer(s.Window)
		wait:
			for len(buf) < s.BatchSize {
				select {
				case rs := <-ch:
					buf = append(buf, rs...)
				case <-deadline.C:
					break wait
				case <-ctx.Done():
					return
				}
			}
			deadline.Stop()
		}
	more:
		for len(buf) < s.BatchSize {
			select {
			case rs := <-ch:
				buf = append(buf, rs...)
			default:
				break more
			}
		}
		k := min(s.BatchSize, len(buf))
		ev = append(ev[:0], head...)
		n := 0
		for _, r := range buf[:k] {
			if !keep(s, r.Value) {
				continue
			}
			if n > 0 {
				ev = append(ev, ',')
			}
			n++
			kr := payload.KafkaRecord{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp, Key: r.Key, Value: r.Value}
			ev = payload.AppendKafka(ev, &kr)
		}
		ev = append(ev, tail...)
		if n > 0 {
			if err := inv.Invoke(ctx, ev); err != nil {
				return
			}
		}
		cl.MarkCommitRecords(buf[k-1])
		buf = buf[k:]
	}
}
