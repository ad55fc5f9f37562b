// Package memsource is an in-memory ordered source for tests: lanes of
// records kept in a Log that outlives pollers (as a stream outlives a
// crashed consumer), and a Poller that reads them from the checkpoint a
// previous poller left. It implements the source.Poller contract with
// stream semantics: a checkpoint per lane, written only below every
// unfinished record (source.Tracker).
package memsource

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/esmd/esmd/source"
)

// Log is the durable side: the records of every lane and the checkpoints.
type Log struct {
	mu          sync.Mutex
	lanes       map[string][]source.Record
	order       []string
	checkpoints map[string]int // lane -> index of the last done record
	ended       map[string]bool
	changed     chan struct{}
	// Lanes spreads produced records over this many lanes by key (default 1).
	Lanes int
}

// NewLog returns an empty log with n lanes.
func NewLog(n int) *Log {
	return &Log{lanes: map[string][]source.Record{}, checkpoints: map[string]int{}, ended: map[string]bool{}, changed: make(chan struct{}), Lanes: n}
}

// End closes a lane, as a split closes a shard: it gets no more records,
// and a poller reports it ended (source.LaneEnder) once it handed out the
// lane's last record.
func (l *Log) End(lane string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ended[lane] = true
	close(l.changed)
	l.changed = make(chan struct{})
}

// Body is the JSON element memsource produces for a record: {"key":..,"body":..}.
type Body struct {
	Key  string `json:"key"`
	Body string `json:"body"`
}

// Produce appends a record with a partition key and body, encoded as a
// Body; its lane is a hash of the key.
func (l *Log) Produce(key, body string) source.Record {
	return l.ProduceData(key, func(string, string, time.Time) []byte {
		data, _ := json.Marshal(Body{Key: key, Body: body})
		return data
	})
}

// ProduceData appends a record whose encoded Data encode makes from the
// lane, sequence number and arrival time the log assigns (to produce
// records in a real source's shape, such as payload.AppendKinesis).
func (l *Log) ProduceData(key string, encode func(lane, seq string, arrival time.Time) []byte) source.Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	lane := fmt.Sprintf("lane-%d", hash(key)%uint32(max(l.Lanes, 1)))
	if _, ok := l.lanes[lane]; !ok {
		l.order = append(l.order, lane)
		l.checkpoints[lane] = -1
	}
	seq := strconv.Itoa(len(l.lanes[lane]))
	now := time.Now()
	r := source.Record{Lane: lane, Key: key, ID: seq, Seq: seq, Arrival: now, Data: encode(lane, seq, now)}
	l.lanes[lane] = append(l.lanes[lane], r)
	close(l.changed)
	l.changed = make(chan struct{})
	return r
}

// Checkpoint returns a lane's checkpoint index (-1 when none).
func (l *Log) Checkpoint(lane string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cp, ok := l.checkpoints[lane]; ok {
		return cp
	}
	return -1
}

func hash(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint32(s[i])) * 16777619
	}
	return h
}

// Poller reads a Log from its checkpoints.
type Poller struct {
	log     *Log
	max     int
	tracker *source.Tracker
	mu      sync.Mutex
	next    map[string]int // lane -> next index to read
	ended   []string       // lanes ended and read to their end, not yet reported
	told    map[string]bool
}

// NewPoller starts reading log after its checkpoints, at most max records
// per Poll (default 100).
func (l *Log) NewPoller(max int) *Poller {
	if max <= 0 {
		max = 100
	}
	return &Poller{log: l, max: max, tracker: source.NewTracker(), next: map[string]int{}, told: map[string]bool{}}
}

// Poll returns unread records, lane by lane, waiting for new ones.
func (p *Poller) Poll(ctx context.Context) ([]source.Record, error) {
	for {
		p.log.mu.Lock()
		changed := p.log.changed
		var out []source.Record
		p.mu.Lock()
		for _, lane := range p.log.order {
			i, ok := p.next[lane]
			if !ok {
				i = p.log.checkpoints[lane] + 1
			}
			for ; i < len(p.log.lanes[lane]) && len(out) < p.max; i++ {
				r := p.log.lanes[lane][i]
				p.tracker.Add(lane, r.Seq)
				out = append(out, r)
			}
			p.next[lane] = i
			if p.log.ended[lane] && i == len(p.log.lanes[lane]) && !p.told[lane] {
				p.told[lane] = true
				p.ended = append(p.ended, lane)
			}
		}
		ended := len(p.ended) > 0
		p.mu.Unlock()
		p.log.mu.Unlock()
		if len(out) > 0 || ended {
			return out, nil // an ended lane is reported at once
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-changed:
		}
	}
}

// EndedLanes implements source.LaneEnder: lanes closed with Log.End whose
// last record a Poll has handed out.
func (p *Poller) EndedLanes() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.ended
	p.ended = nil
	return out
}

// Ack implements source.Poller: finished records move each lane's
// checkpoint up to its first unfinished record. An ordered source is never
// told of failures: the retry policy owns them, so any outcome other than
// nil is an error.
func (p *Poller) Ack(ctx context.Context, recs []source.Record, outcome error) error {
	if outcome != nil {
		return fmt.Errorf("memsource: failure outcome on an ordered source: %w", outcome)
	}
	return p.Done(ctx, recs)
}

// Done checkpoints each lane below its unfinished records.
func (p *Poller) Done(_ context.Context, recs []source.Record) error {
	for _, r := range recs {
		if cp, ok := p.tracker.Done(r.Lane, r.Seq); ok {
			n, _ := strconv.Atoi(cp)
			p.log.mu.Lock()
			p.log.checkpoints[r.Lane] = n
			p.log.mu.Unlock()
		}
	}
	return nil
}

// Close stops the poller; unfinished records are read again by the next one.
func (p *Poller) Close() error { return nil }
