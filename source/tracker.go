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
	seqs []string        // unfinished and finished records not yet checkpointed, read order
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
	n := 0
	for n < len(l.seqs) && l.done[l.seqs[n]] {
		delete(l.done, l.seqs[n])
		n++
	}
	if n == 0 {
		return "", false
	}
	checkpoint = l.seqs[n-1]
	l.seqs = append(l.seqs[:0], l.seqs[n:]...)
	return checkpoint, true
}

// Pending returns how many records of a lane are not yet checkpointed.
func (t *Tracker) Pending(lane string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l := t.lanes[lane]; l != nil {
		return len(l.seqs)
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
