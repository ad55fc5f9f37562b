package pipeline

import (
	"github.com/esmd/esmd/batcher"
	"github.com/esmd/esmd/payload"
)

// DefaultMaxBufferedBytes is the byte bound of a mapping's buffer when
// Runner.MaxBufferedBytes is 0: 4 MiB, raised to two batches per lane
// (see readAhead).
const DefaultMaxBufferedBytes = 4 << 20

// waitingBytes is how many times its byte bound a buffer may hold while a
// batch waits for its batching window (readAhead.full).
const waitingBytes = 4

// maxAutoBuffered caps the default buffer of a mapping whose lanes each
// want two batches (Runner.MaxBuffered).
const maxAutoBuffered = 100000

// readAhead bounds what a mapping's pipeline holds ahead of its function:
// the records polled and not yet in a batch. Polling pauses while the
// buffer holds too many records (Runner.MaxBuffered) or too many bytes: a
// count alone lets 10,000 records of 1 KB, and their events, make most of
// the process's memory.
type readAhead struct {
	b *batcher.Batcher
	// records is the bound in records.
	records func() int
	// bytes is the byte bound, raised (when auto) to what keeps batches
	// ready for every lane: see full.
	bytes int
	auto  bool
	// batch is the mapping's BatchSize; own says the source's lanes are
	// its own (shards, partitions), not dealt by the batcher.
	batch int
	own   bool
}

// newReadAhead returns the bounds of a mapping's buffer: the Runner's, or
// the defaults (Runner.MaxBuffered, Runner.MaxBufferedBytes).
func (r *Runner) newReadAhead(b *batcher.Batcher, policy batcher.Policy, deal bool) *readAhead {
	a := &readAhead{b: b, bytes: r.MaxBufferedBytes, batch: policy.BatchSize, own: !deal}
	if a.bytes <= 0 {
		a.bytes, a.auto = DefaultMaxBufferedBytes, true
	}
	if r.MaxBuffered > 0 {
		n := r.MaxBuffered
		a.records = func() int { return n }
		return a
	}
	base := max(4*policy.BatchSize, 10000)
	a.records = func() int { return base }
	if a.own {
		a.records = func() int {
			return max(base, min(2*policy.BatchSize*b.Lanes(), maxAutoBuffered))
		}
	}
	return a
}

// full reports whether polling pauses. An empty buffer is never full, so
// a record larger than the byte bound still flows, one poll at a time.
//
// The default byte bound is DefaultMaxBufferedBytes, raised to the bytes of
// two batches per lane (four batches in all for a source whose batcher
// deals its records to lanes), a batch being BatchSize records of the
// buffered records' mean size, at most the payload limit: a bound below
// that would hold every lane to less than a batch, each then waiting for
// its batching window, and the lanes polled last would starve.
func (a *readAhead) full() bool {
	n, size := a.b.Size()
	switch {
	case n == 0:
		return false
	case n >= a.records():
		return true
	case size < a.bytes:
		return false
	case size < waitingBytes*a.bytes && a.b.Waiting():
		// A lane short of a full batch would wait out its batching window
		// while the source holds the rest of it: polling goes on, up to
		// waitingBytes times the bound. (With a 500 ms window and 8 Kafka
		// partitions, one partition's hand-out filling the bytes left the
		// others' batches waiting for the window: 0.65 of the raw loop
		// against 0.85 with no window.)
		return false
	case !a.auto:
		return true
	}
	batch := min(a.batch*(size/n), payload.MaxPayloadSize)
	batches := 4
	if a.own {
		batches = max(batches, 2*a.b.Lanes())
	}
	return size >= batches*batch
}
