package source

import "sync"

// Tracker computes stream checkpoints when records of a lane finish out of
// order (ParallelizationFactor sub-lanes, bisected batches): the checkpoint
// of a lane is the position of the last record such that it and every
// record before it are done. A poller Adds records in the order it reads
// them and calls Done as outcomes arrive; it persists the checkpoint Done
// returns. Safe for concurrent use.
type Tracker struct {
	mu    sync.Mutex
	lanes map[string]*laneTrack
}

type laneTrack struct {
	seqs []string        // records read, in read order; seqs[head:] are not checkpointed
	head int             // first record not yet checkpointed
	done map[string]bool // finished, by Seq
}

// NewTracker returns an empty tracker.
func NewTracker() *Tracker { return &Tracker{lanes: map[string]*laneTrack{}} }

// Add registers a record that was read, in read order within its lane.
func (t *Tracker) Add(lane, seq string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.lanes[lane]
	if l == nil {
		l = &laneTrack{done: map[string]bool{}}
		t.lanes[lane] = l
	}
	l.seqs = append(l.seqs, seq)
}

// Done marks a record finished and returns the lane's new checkpoint, with
// advanced false when the checkpoint did not move (an earlier record is
// still unfinished). Unknown records are ignored.
func (t *Tracker) Done(lane, seq string) (checkpoint string, advanced bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.lanes[lane]
	if l == nil {
		return "", false
	}
	l.done[seq] = true
	start := l.head
	for l.head < len(l.seqs) && l.done[l.seqs[l.head]] {
		delete(l.done, l.seqs[l.head])
		l.head++
	}
	if l.head == start {
		return "", false
	}
	checkpoint = l.seqs[l.head-1]
	// Drop the checkpointed prefix once it is most of the slice, so the
	// cost stays linear in the records read, not quadratic.
	if l.head > len(l.seqs)/2 {
		l.seqs = append(l.seqs[:0], l.seqs[l.head:]...)
		l.head = 0
	}
	return checkpoint, true
}

// Pending returns how many records of a lane are not yet checkpointed.
func (t *Tracker) Pending(lane string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l := t.lanes[lane]; l != nil {
		return len(l.seqs) - l.head
	}
	return 0
}

// Forget drops a lane (its shard was closed and fully checkpointed, or the
// poller lost its lease).
func (t *Tracker) Forget(lane string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.lanes, lane)
}
