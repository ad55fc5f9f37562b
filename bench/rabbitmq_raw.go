package bench

import (
	"context"
	"errors"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/esmd/esmd/payload"
)

// rawRabbitMQ is the plain amqp091-go loop: one consumer with a prefetch
// of rawPrefetch(BatchSize), its deliveries buffered as they arrive,
// collects up to BatchSize deliveries (waiting up to Window
// for more), invokes them as one RabbitMQ event, and acknowledges them
// with one multiple ack.
func rawRabbitMQ(ctx context.Context, s *RawSpec, inv *rawInvoker) error {
	conn, err := amqp.Dial(s.Endpoints[0])
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := ch.Qos(rawPrefetch(s.BatchSize), 0, false); err != nil {
		return err
	}
	consumed, err := ch.ConsumeWithContext(ctx, s.Name, "", false, false, false, false, nil)
	if err != nil {
		return err
	}
	// amqp091-go hands deliveries over an unbuffered channel, one at a
	// time: a buffer of the prefetch lets a batch take what has arrived.
	deliveries := make(chan amqp.Delivery, rawPrefetch(s.BatchSize))
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(deliveries)
		for d := range consumed {
			select {
			case deliveries <- d:
			case <-ctx.Done():
				return
			}
		}
	}()
	env := payload.RabbitMQ(s.Arn)
	group := payload.RabbitMQGroup(s.Name, s.VHost)
	var ev []byte
	var batch []amqp.Delivery
	for {
		batch = batch[:0]
		select {
		case d, ok := <-deliveries:
			if !ok {
				return errors.New("RabbitMQ closed the consumer")
			}
			batch = append(batch, d)
		case <-ctx.Done():
			return ctx.Err()
		}
		window := time.NewTimer(s.Window)
	fill:
		for len(batch) < s.BatchSize {
			if s.Window == 0 {
				select {
				case d, ok := <-deliveries:
					if !ok {
						break fill
					}
					batch = append(batch, d)
					continue
				default:
					break fill
				}
			}
			select {
			case d, ok := <-deliveries:
				if !ok {
					break fill
				}
				batch = append(batch, d)
			case <-window.C:
				break fill
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		window.Stop()
		recs := make([][]byte, 0, len(batch))
		for i := range batch {
			d := &batch[i]
			if !keep(s, d.Body) {
				continue
			}
			mode := d.DeliveryMode
			recs = append(recs, payload.AppendRabbitMQ(nil, &payload.RabbitMQMessage{Redelivered: d.Redelivered, Data: d.Body,
				Properties: payload.RabbitMQProperties{ContentType: d.ContentType, DeliveryMode: &mode, MessageID: d.MessageId, Timestamp: d.Timestamp}}))
		}
		if len(recs) > 0 {
			ev = env.Append(ev[:0], group, recs)
			if err := inv.Invoke(ctx, ev); err != nil {
				return err
			}
		}
		if err := ch.Ack(batch[len(batch)-1].DeliveryTag, true); err != nil {
			return err
		}
	}
}

// rawPrefetch is the prefetch of the raw MQ loops: four batches, so the
// next batch is on its way while one is invoked.
func rawPrefetch(batch int) int { return min(4*batch, 65535) }
