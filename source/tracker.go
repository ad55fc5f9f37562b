package source

import (
	"slices"
	"sync"
)

// Tracker computes checkpoints when records of a lane finish out of order
// (ParallelizationFactor sub-lanes, bisected batches, several batches of
// a partition in flight): the checkpoint of a lane is the position of the
// last record such that it and every record before it are done. A poller
// Adds records in the order it reads them and calls Done as outcomes
// arrive; it persists the checkpoint Done returns. Safe for concurrent use.
//
// Positions are strings (Add, Done: stream sequence numbers) or, on the
// fast path for sources that track every record, integers increasing
// within the lane (AddOffsets, DoneOffsets: Kafka offsets, not
// necessarily contiguous, several in one call); one lane uses one kind.
type Tracker struct {
	mu    sync.Mutex
	lanes map[string]*laneTrack
}

type laneTrack struct {
	head int // first record not yet checkpointed, in seqs or offs
	// String positions: seqs are the records read, in read order;
	// seqs[head:] are not checkpointed. done holds the finished ones.
	seqs []string
	done map[string]bool
	// sizes are the records' sizes in bytes (AddSized; 0 for Add), one per
	// seq; bytes is the sum of sizes[head:].
	sizes []int32
	bytes int
	// Integer positions: offs are the records read, increasing; fin[i]
	// says whether offs[i] finished. No map: a binary search finds a
	// position, and finishing one costs no allocation.
	offs []int64
	fin  []bool
}

// NewTracker returns an empty tracker.
func NewTracker() *Tracker { return &Tracker{lanes: map[string]*laneTrack{}} }

// lane returns a lane's track, made when absent. Called with t.mu held.
func (t *Tracker) lane(lane string) *laneTrack {
	l := t.lanes[lane]
	if l == nil {
		l = &laneTrack{}
		t.lanes[lane] = l
	}
	return l
}

// Add registers a record that was read, in read order within its lane.
func (t *Tracker) Add(lane, seq string) { t.AddSized(lane, seq, 0) }

// AddSized is Add for a record of size bytes, which PendingBytes counts
// until it is checkpointed.
func (t *Tracker) AddSized(lane, seq string, size int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.lane(lane)
	if l.done == nil {
		l.done = map[string]bool{}
	}
	l.seqs = append(l.seqs, seq)
	l.sizes = append(l.sizes, int32(min(size, 1<<31-1)))
	l.bytes += size
}

// Done marks a record finished and returns the lane's new checkpoint, with
// advanced false when the checkpoint did not move (an earlier record is
// still unfinished). Unknown records are ignored.
func (t *Tracker) Done(lane, seq string) (checkpoint string, advanced bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.lanes[lane]
	if l == nil || l.done == nil {
		return "", false
	}
	l.done[seq] = true
	start := l.head
	for l.head < len(l.seqs) && l.done[l.seqs[l.head]] {
		delete(l.done, l.seqs[l.head])
		l.bytes -= int(l.sizes[l.head])
		l.head++
	}
	if l.head == start {
		return "", false
	}
	checkpoint = l.seqs[l.head-1]
	// Drop the checkpointed prefix once it is most of the slice, so the
	// cost stays linear in the records read, not quadratic.
	if l.head > len(l.seqs)/2 {
		n := copy(l.seqs, l.seqs[l.head:])
		clear(l.seqs[n:]) // old slots: a seq may hold its read's buffer
		l.seqs = l.seqs[:n]
		l.sizes = append(l.sizes[:0], l.sizes[l.head:]...)
		l.head = 0
	}
	return checkpoint, true
}

// AddOffsets registers records with integer positions, in increasing
// order and greater than the lane's earlier ones.
func (t *Tracker) AddOffsets(lane string, offs ...int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.lane(lane)
	l.offs = append(l.offs, offs...)
	for range offs {
		l.fin = append(l.fin, false)
	}
}

// DoneOffsets is Done for records registered with AddOffsets, any number
// of them in one call: it returns the lane's new checkpoint, the last
// position such that it and every one before it are done, with advanced
// false when it did not move. Unknown positions are ignored.
func (t *Tracker) DoneOffsets(lane string, offs ...int64) (checkpoint int64, advanced bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.lanes[lane]
	if l == nil {
		return 0, false
	}
	for _, off := range offs {
		if i, ok := slices.BinarySearch(l.offs[l.head:], off); ok {
			l.fin[l.head+i] = true
		}
	}
	start := l.head
	for l.head < len(l.offs) && l.fin[l.head] {
		l.head++
	}
	if l.head == start {
		return 0, false
	}
	checkpoint = l.offs[l.head-1]
	// Drop the checkpointed prefix once it is most of the slices (see
	// Done).
	if l.head > len(l.offs)/2 {
		n := copy(l.offs, l.offs[l.head:])
		copy(l.fin, l.fin[l.head:])
		l.offs, l.fin, l.head = l.offs[:n], l.fin[:n], 0
	}
	return checkpoint, true
}

// Pending returns how many records of a lane are not yet checkpointed.
func (t *Tracker) Pending(lane string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l := t.lanes[lane]; l != nil {
		return len(l.seqs) + len(l.offs) - l.head
	}
	return 0
}

// PendingBytes returns the sizes (AddSized) of a lane's records that are
// not yet checkpointed, in bytes.
func (t *Tracker) PendingBytes(lane string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l := t.lanes[lane]; l != nil {
		return l.bytes
	}
	return 0
}

// Forget drops a lane (its shard was closed and fully checkpointed, the
// poller lost its lease or its partition): the lane starts afresh at its
// next Add.
func (t *Tracker) Forget(lane string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.lanes, lane)
}
