package sqs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/esmd/esmd/source"
)

// ackParallel is how many DeleteMessageBatch or ChangeMessageVisibilityBatch
// calls one Done, Failed or Close makes at once.
const ackParallel = 8

// take stops holding the messages of recs and returns them, whatever the
// pipeline did with them (the poller is closing). Messages no longer held
// (already acknowledged or released) and records of another poller are
// skipped.
func (p *Poller) take(recs []source.Record) []*message {
	out := make([]*message, 0, len(recs))
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range recs {
		m, ok := recs[i].Meta.(*message)
		if !ok {
			continue
		}
		if _, held := p.held[m]; held {
			p.unholdLocked(m)
			out = append(out, m)
		}
	}
	if len(out) > 0 {
		p.roomLocked()
	}
	return out
}

// roomLocked wakes the receivers waiting for held messages to be let go
// (waitRoom). p.mu is held.
func (p *Poller) roomLocked() {
	close(p.room)
	p.room = make(chan struct{})
}

// unholdLocked stops holding m: it leaves the held set and its FIFO group.
// p.mu is held. The caller signals the room made with roomLocked.
func (p *Poller) unholdLocked(m *message) {
	delete(p.held, m)
	if !p.fifo {
		return
	}
	g := p.groups[m.group]
	if g == nil {
		return
	}
	for i, x := range g.msgs {
		if x == m {
			g.msgs = append(g.msgs[:i], g.msgs[i+1:]...)
			break
		}
	}
	if len(g.msgs) == 0 {
		// The group is free to move to another lane.
		delete(p.groups, m.group)
	}
}

// settle stops holding the messages of recs, which the pipeline reports
// done (ok) or failed, and returns the messages to delete and those to hand
// back to the queue.
//
// On a standard queue these are recs' messages as reported. On a FIFO queue
// a message group keeps its order under failures (spec SQS-19, SQS-21):
//
//   - a failed message is handed back with every message of its group that
//     comes after it and is not deleted yet: with ReportBatchItemFailures
//     the function may name one message of a group and not the later ones
//     (AWS tells it to name them all); esmd hands them back anyway, so the
//     failed message is retried first and the group is processed in order;
//   - a message reported done while an earlier message of its group is
//     still held (in the pipeline: buffered, or its failure not reported
//     yet) is deleted only once that one is; if that one fails, it is
//     handed back with it. This covers the pipeline reporting a partial
//     batch response's successes before its failures, and filtered-out
//     messages, which are reported done before the batch ahead of them
//     ran.
//
// The rule holds until the group has no held message left.
func (p *Poller) settle(recs []source.Record, ok bool) (del, back []*message) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var touched []*fifoGroup
	for i := range recs {
		m, isMsg := recs[i].Meta.(*message)
		if !isMsg || m.done {
			continue
		}
		if _, held := p.held[m]; !held {
			continue
		}
		if !p.fifo {
			p.unholdLocked(m)
			if ok {
				del = append(del, m)
			} else {
				back = append(back, m)
			}
			continue
		}
		g := p.groups[m.group]
		switch {
		case ok && (g.failedAt == 0 || m.order < g.failedAt):
			m.done = true
			touched = append(touched, g)
		case ok:
			// After a failed message of its group: handed back with it.
			p.unholdLocked(m)
			back = append(back, m)
		default:
			if g.failedAt == 0 || m.order < g.failedAt {
				g.failedAt = m.order
			}
			var later []*message
			for _, x := range g.msgs {
				if x.done && x.order > m.order {
					later = append(later, x)
				}
			}
			p.unholdLocked(m)
			back = append(back, m)
			for _, x := range later {
				x.done = false
				p.unholdLocked(x)
				back = append(back, x)
			}
			touched = append(touched, g)
		}
	}
	// Delete, in order, the done messages no earlier message holds back.
	for _, g := range touched {
		for len(g.msgs) > 0 && g.msgs[0].done {
			m := g.msgs[0]
			m.done = false
			p.unholdLocked(m) // may delete the group: g is not read again then
			del = append(del, m)
		}
	}
	if len(del)+len(back) > 0 {
		p.roomLocked()
	}
	return del, back
}

// ackContext is the context of acknowledgement calls: not cancelled with
// the pipeline (a finished batch is deleted even while the mapping stops)
// but bounded.
func (p *Poller) ackContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), p.o.ackTimeout)
}

// Ack implements source.Poller: finished messages are deleted (Done),
// failed ones go back to the queue (Failed).
func (p *Poller) Ack(ctx context.Context, recs []source.Record, outcome error) error {
	if errors.Is(outcome, source.ErrStopped) {
		return p.failed(ctx, recs, true)
	}
	return source.AckSplit(ctx, recs, outcome, p.Done, p.Failed)
}

// Done is half of Ack (source.Poller): it deletes the messages, retrying the
// entries SQS could not delete for reasons of its own. On a FIFO queue a
// message that follows a held or failed message of its group waits for it
// or goes back with it (see settle).
func (p *Poller) Done(ctx context.Context, recs []source.Record) error {
	del, back := p.settle(recs, true)
	if len(del) == 0 && len(back) == 0 {
		return nil
	}
	actx, cancel := p.ackContext(ctx)
	defer cancel()
	var err error
	if len(del) > 0 {
		err = p.chunked(actx, del, p.deleteBatch)
	}
	return errors.Join(err, p.handBack(actx, back, ctx.Err() != nil))
}

// Failed is half of Ack (source.Poller): the messages are left to reappear
// after their visibility timeout, counted from their receive as on AWS (see
// the package doc). When ctx is done the pipeline is stopping and the
// failure is the stop's: the messages are released at once. On a FIFO
// queue the later messages of their groups go back with them (see settle).
func (p *Poller) Failed(ctx context.Context, recs []source.Record) error {
	return p.failed(ctx, recs, ctx.Err() != nil)
}

// failed hands recs back, at once when stopping.
func (p *Poller) failed(ctx context.Context, recs []source.Record, stopping bool) error {
	_, back := p.settle(recs, false)
	if len(back) == 0 {
		return nil
	}
	actx, cancel := p.ackContext(ctx)
	defer cancel()
	return p.handBack(actx, back, stopping)
}

// handBack returns messages to the queue: visible again when their
// visibility timeout, counted from their receive, ends (a call only for
// messages whose visibility esmd extended), or at once when stopping (the
// pipeline is stopping). SQS calls are made under actx.
func (p *Poller) handBack(actx context.Context, msgs []*message, stopping bool) error {
	if len(msgs) == 0 {
		return nil
	}
	now := p.o.now()
	var change []*message
	var vis []int32
	p.mu.Lock() // extended is written by extendLoop
	for _, m := range msgs {
		switch {
		case stopping:
			change, vis = append(change, m), append(vis, 0)
		case m.extended:
			left := m.received.Add(p.vt).Sub(now)
			change, vis = append(change, m), append(vis, int32(max(0, (left+time.Second-1)/time.Second)))
		}
	}
	p.mu.Unlock()
	if len(change) == 0 {
		return nil
	}
	return p.changeVisibility(actx, change, vis)
}

// Close implements source.Poller: it stops receiving and releases every
// message still held (visibility 0), so none waits out its timeout. Long
// polls already in progress end by themselves and release what they get
// (see receive).
func (p *Poller) Close() error {
	var err error
	p.once.Do(func() {
		// Under p.mu, so that every held message is either in the
		// snapshot below or released by its receiver (records, receive).
		p.mu.Lock()
		p.cancel()
		p.mu.Unlock()
		close(p.closed)
		p.wg.Wait() // the extender
		p.mu.Lock()
		msgs := make([]*message, 0, len(p.held))
		for m := range p.held {
			msgs = append(msgs, m)
		}
		p.held = map[*message]struct{}{}
		p.groups = map[string]*fifoGroup{}
		p.mu.Unlock()
		if len(msgs) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(p.base, p.o.ackTimeout)
		defer cancel()
		err = p.changeVisibility(ctx, msgs, make([]int32, len(msgs)))
		if err == nil {
			p.log.Debug("released held messages", "count", len(msgs))
		}
	})
	return err
}

// changeVisibility sets the visibility of msgs[i] to vis[i] seconds.
func (p *Poller) changeVisibility(ctx context.Context, msgs []*message, vis []int32) error {
	byMsg := make(map[*message]int32, len(msgs))
	for i, m := range msgs {
		byMsg[m] = vis[i]
	}
	return p.chunked(ctx, msgs, func(ctx context.Context, chunk []*message) error {
		return p.visibilityBatch(ctx, chunk, func(m *message) int32 { return byMsg[m] })
	})
}

// chunked calls f on chunks of 10 messages, ackParallel at a time, and
// joins the errors.
func (p *Poller) chunked(ctx context.Context, msgs []*message, f func(context.Context, []*message) error) error {
	if len(msgs) <= maxMessages {
		return f(ctx, msgs)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		sem  = make(chan struct{}, ackParallel)
	)
	for i := 0; i < len(msgs); i += maxMessages {
		chunk := msgs[i:min(i+maxMessages, len(msgs))]
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := f(ctx, chunk); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// retriable reports whether a failed batch entry is worth retrying: SQS's
// own faults are, the sender's (an expired receipt handle) are not.
func retriable(e types.BatchResultErrorEntry) bool { return !e.SenderFault }

// deleteBatch deletes up to 10 messages, retrying the call and the entries
// SQS failed until they succeed, fail for the sender's reasons (logged), or
// ctx ends (an error).
func (p *Poller) deleteBatch(ctx context.Context, msgs []*message) error {
	b := p.newBackoff()
	for {
		entries := make([]types.DeleteMessageBatchRequestEntry, len(msgs))
		for i, m := range msgs {
			entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(m.handle)}
		}
		out, err := p.client.DeleteMessageBatch(ctx, &awssqs.DeleteMessageBatchInput{QueueUrl: &p.url, Entries: entries})
		var retry []*message
		switch {
		case err != nil:
			retry = msgs
			if ctx.Err() != nil {
				return fmt.Errorf("sqs: delete %d messages: %w", len(msgs), err)
			}
			p.log.Warn("DeleteMessageBatch failed; retrying", "err", err)
		default:
			for _, f := range out.Failed {
				i, _ := strconv.Atoi(aws.ToString(f.Id))
				if i < 0 || i >= len(msgs) {
					continue
				}
				if retriable(f) {
					retry = append(retry, msgs[i])
					continue
				}
				// The sender's fault: in practice a receipt handle SQS no
				// longer accepts (the message became visible again and
				// was received anew). It will be delivered again, which
				// at-least-once allows; failing the caller would only
				// restart the mapping.
				p.log.Warn("SQS refused to delete a message; it will be delivered again", "code", aws.ToString(f.Code), "message", aws.ToString(f.Message))
			}
		}
		if len(retry) == 0 {
			return nil
		}
		msgs = retry
		if !sleep(ctx, b.Next()) {
			return fmt.Errorf("sqs: %d messages not deleted: %w", len(msgs), ctx.Err())
		}
	}
}

// visibilityBatch changes the visibility of up to 10 messages to vis(m)
// seconds, with the same retries as deleteBatch. It updates the deadlines.
func (p *Poller) visibilityBatch(ctx context.Context, msgs []*message, vis func(*message) int32) error {
	b := p.newBackoff()
	var permanent []error
	for {
		entries := make([]types.ChangeMessageVisibilityBatchRequestEntry, len(msgs))
		for i, m := range msgs {
			entries[i] = types.ChangeMessageVisibilityBatchRequestEntry{Id: aws.String(strconv.Itoa(i)),
				ReceiptHandle: aws.String(m.handle), VisibilityTimeout: vis(m)}
		}
		now := p.o.now()
		out, err := p.client.ChangeMessageVisibilityBatch(ctx, &awssqs.ChangeMessageVisibilityBatchInput{QueueUrl: &p.url, Entries: entries})
		var retry []*message
		switch {
		case err != nil:
			retry = msgs
			if ctx.Err() != nil {
				return fmt.Errorf("sqs: change visibility of %d messages: %w", len(msgs), err)
			}
			p.log.Warn("ChangeMessageVisibilityBatch failed; retrying", "err", err)
		default:
			failed := map[int]bool{}
			for _, f := range out.Failed {
				i, _ := strconv.Atoi(aws.ToString(f.Id))
				if i < 0 || i >= len(msgs) {
					continue
				}
				failed[i] = true
				if retriable(f) {
					retry = append(retry, msgs[i])
					continue
				}
				permanent = append(permanent, fmt.Errorf("sqs: change message visibility: %s: %s", aws.ToString(f.Code), aws.ToString(f.Message)))
			}
			p.mu.Lock()
			for i, m := range msgs {
				if !failed[i] {
					m.deadline = now.Add(time.Duration(vis(m)) * time.Second)
				}
			}
			p.mu.Unlock()
		}
		if len(retry) == 0 {
			return errors.Join(permanent...)
		}
		msgs = retry
		if !sleep(ctx, b.Next()) {
			return errors.Join(append(permanent, fmt.Errorf("sqs: visibility of %d messages not changed: %w", len(msgs), ctx.Err()))...)
		}
	}
}

// extendLoop keeps held messages invisible: a message with half its
// visibility timeout or less left is extended by one more timeout, capped
// at SQS's 12 hours after its receive (see the package doc).
func (p *Poller) extendLoop() {
	defer p.wg.Done()
	tick := min(max(p.vt/4, 100*time.Millisecond), 5*time.Second)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
		}
		now := p.o.now()
		var due []*message
		vis := map[*message]int32{}
		p.mu.Lock()
		for m := range p.held {
			if m.deadline.Sub(now) > p.vt/2 {
				continue
			}
			limit := m.received.Add(maxVisibility).Sub(now)
			v := min(p.vt, limit)
			if v < time.Second {
				continue
			}
			due = append(due, m)
			vis[m] = int32(v / time.Second)
			// Marked now, before the call: a Failed racing with the call
			// must restore the original deadline either way.
			m.extended = true
		}
		p.mu.Unlock()
		if len(due) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(p.ctx, max(p.vt/2, time.Second))
		err := p.chunked(ctx, due, func(ctx context.Context, chunk []*message) error {
			return p.visibilityBatch(ctx, chunk, func(m *message) int32 { return vis[m] })
		})
		cancel()
		if err != nil && p.ctx.Err() == nil {
			// A message deleted while its extension was under way fails
			// the extension (its receipt handle is gone): not worth a
			// warning. Messages still held are.
			p.mu.Lock()
			still := 0
			for _, m := range due {
				if _, ok := p.held[m]; ok {
					still++
				}
			}
			p.mu.Unlock()
			if still > 0 {
				p.log.Warn("extending the visibility of held messages", "count", still, "err", err)
			}
		}
	}
}
