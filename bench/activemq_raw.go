package bench

import (
	"context"
	"errors"
	"net/url"
	"strconv"
	"time"

	"github.com/go-stomp/stomp/v3"

	"github.com/esmd/esmd/payload"
)

// rawActiveMQ is the plain go-stomp loop: one subscription (client ack,
// prefetch rawPrefetch(BatchSize)) collects up to BatchSize messages (waiting up to
// Window for more), invokes them as one ActiveMQ event, and acknowledges
// the last one, which with client ack acknowledges the batch.
func rawActiveMQ(ctx context.Context, s *RawSpec, inv *rawInvoker) error {
	u, err := url.Parse(s.Endpoints[0])
	if err != nil {
		return err
	}
	pass, _ := u.User.Password()
	conn, err := stomp.Dial("tcp", u.Host, stomp.ConnOpt.Login(u.User.Username(), pass), stomp.ConnOpt.Host("/"))
	if err != nil {
		return err
	}
	defer func() { _ = conn.Disconnect() }()
	sub, err := conn.Subscribe("/queue/"+s.Name, stomp.AckClient,
		stomp.SubscribeOpt.Header("activemq.prefetchSize", strconv.Itoa(rawPrefetch(s.BatchSize))))
	if err != nil {
		return err
	}
	env := payload.ActiveMQ(s.Arn)
	var ev []byte
	var batch []*stomp.Message
	// next returns the next message; with poll it returns at once when
	// none is ready, else it waits until block fires.
	next := func(block <-chan time.Time, poll bool) (*stomp.Message, bool, error) {
		if poll {
			select {
			case m, ok := <-sub.C:
				switch {
				case !ok:
					return nil, false, errors.New("ActiveMQ closed the subscription")
				case m.Err != nil:
					return nil, false, m.Err
				}
				return m, true, nil
			default:
				return nil, false, nil
			}
		}
		select {
		case m, ok := <-sub.C:
			if !ok || m.Err != nil {
				if ok {
					return nil, false, m.Err
				}
				return nil, false, errors.New("ActiveMQ closed the subscription")
			}
			return m, true, nil
		case <-block:
			return nil, false, nil
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
	for {
		batch = batch[:0]
		m, _, err := next(nil, false)
		if err != nil {
			return err
		}
		batch = append(batch, m)
		window := time.NewTimer(s.Window)
		for len(batch) < s.BatchSize {
			m, ok, err := next(window.C, s.Window == 0)
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			batch = append(batch, m)
		}
		window.Stop()
		ev = append(ev[:0], env.Head...)
		n := 0
		for _, m := range batch {
			if !keep(s, m.Body) {
				continue
			}
			if n > 0 {
				ev = append(ev, ',')
			}
			n++
			ts, _ := strconv.ParseInt(m.Header.Get("timestamp"), 10, 64)
			ev = payload.AppendActiveMQ(ev, &payload.ActiveMQMessage{MessageID: m.Header.Get("message-id"), MessageType: "jms/text-message",
				DeliveryMode: 2, Destination: s.Name, Data: m.Body, Timestamp: time.UnixMilli(ts), Priority: 4,
				Redelivered: m.Header.Get("redelivered") == "true"})
		}
		ev = append(ev, env.Tail...)
		if n > 0 {
			if err := inv.Invoke(ctx, ev); err != nil {
				return err
			}
		}
		if err := conn.Ack(batch[len(batch)-1]); err != nil {
			return err
		}
	}
}
