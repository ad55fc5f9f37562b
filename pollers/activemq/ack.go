package activemq

import (
	"errors"
	"sync"

	"github.com/go-stomp/stomp/v3"
)

// ledger is a session's account of the messages its subscription
// delivered, in delivery order, from the first one not yet settled. It
// lets the poller acknowledge in ack mode client, where ActiveMQ 5.17
// treats the frames as follows (StompSubscription.onStompMessageAck and
// onStompMessageNack, PrefetchSubscription.acknowledge; checked against the
// broker by TestBrokerClientAckSemantics):
//
//   - ACK of message M is cumulative: it acknowledges every message the
//     subscription delivered before M that is still unacknowledged, and M.
//   - NACK of M is individual (a poison ack of M alone): M goes to the
//     broker's redelivery policy, and the subscription forgets it, so a
//     later cumulative ACK skips it.
//   - ACK or NACK of a message the subscription no longer holds (already
//     covered by a cumulative ACK, or NACKed) is a protocol error: the
//     broker answers with an ERROR frame.
//
// So failed messages are NACKed one by one at once, as in ack mode
// client-individual, and done ones (delivered, or filtered out) are
// recorded; when the longest settled prefix grows, one ACK of its last
// done message acknowledges them all. A message still in flight (an
// earlier batch of another lane, or one the filter kept behind records it
// dropped) ends the prefix, so no ACK covers it before it is settled. The
// NACKs of a prefix are sent before the ACK that ends it, on the same
// connection and under mu, so the broker has forgotten them when the ACK
// arrives.
//
// A message done behind one still in flight is not acknowledged until that
// one settles: when the connection is lost meanwhile, or the poller is
// closed with records in flight, the broker delivers it again (at least
// once). The pipeline settles every record it was handed before it closes
// the poller, so a stop does not do that.
type ledger struct {
	mu   sync.Mutex
	base int64   // position of ents[0]
	ents []entry // delivered from position base on, in delivery order
}

type entry struct {
	msg   *stomp.Message
	state uint8
}

const (
	pending uint8 = iota // handed out, outcome unknown
	acked                // done: to be covered by a cumulative ACK
	nacked               // NACKed: the subscription forgot it
)

// add records a delivered message and returns its position. The run
// goroutine calls it in delivery order.
func (l *ledger) add(msg *stomp.Message) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ents = append(l.ents, entry{msg: msg})
	return l.base + int64(len(l.ents)) - 1
}

// settle NACKs the messages at the failed positions, marks those at the
// done positions done, then ACKs the end of the settled prefix when it
// holds a message not yet acknowledged: one frame for the batch, whatever
// its outcome, the NACKs first. A position settled before, or not in the
// ledger, is skipped. A message whose NACK could not be sent stays
// pending: no ACK may cover it (its connection is lost anyway).
func (l *ledger) settle(conn *stomp.Conn, done, failed []int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	for _, pos := range failed {
		if e := l.pending(pos); e != nil {
			if err := conn.Nack(e.msg); err != nil {
				errs = append(errs, err)
				continue
			}
			e.state, e.msg = nacked, nil // never named again
		}
	}
	for _, pos := range done {
		if e := l.pending(pos); e != nil {
			e.state = acked
		}
	}
	var last *stomp.Message
	n := 0
	for n < len(l.ents) && l.ents[n].state != pending {
		if l.ents[n].state == acked {
			last = l.ents[n].msg
		}
		n++
	}
	if n > 0 {
		clear(l.ents[:n]) // the messages, for the GC
		l.ents = l.ents[n:]
		l.base += int64(n)
	}
	if last != nil {
		errs = append(errs, conn.Ack(last))
	}
	return errors.Join(errs...)
}

// pending returns the entry at pos when it is pending, else nil. Called
// with mu held.
func (l *ledger) pending(pos int64) *entry {
	i := pos - l.base
	if i < 0 || i >= int64(len(l.ents)) || l.ents[i].state != pending {
		return nil
	}
	return &l.ents[i]
}
