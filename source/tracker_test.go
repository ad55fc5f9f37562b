package source

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

func TestTrackerCheckpointsOnlyBelowUnfinished(t *testing.T) {
	tr := NewTracker()
	for _, s := range []string{"1", "2", "3", "4"} {
		tr.Add("a", s)
	}
	tr.Add("b", "9")
	steps := []struct {
		lane, seq, want string
		adv             bool
	}{
		{"a", "2", "", false}, // 1 unfinished
		{"a", "3", "", false},
		{"b", "9", "9", true}, // lanes are independent
		{"a", "1", "3", true}, // 1,2,3 done
		{"a", "4", "4", true},
		{"a", "7", "", false}, // unknown
	}
	for _, s := range steps {
		cp, adv := tr.Done(s.lane, s.seq)
		if cp != s.want || adv != s.adv {
			t.Fatalf("Done(%s,%s) = %q %v, want %q %v", s.lane, s.seq, cp, adv, s.want, s.adv)
		}
	}
	if tr.Pending("a") != 0 {
		t.Errorf("pending %d", tr.Pending("a"))
	}
}

// Property: in any completion order, the checkpoint never passes an
// unfinished record and ends at the last record.
func TestTrackerRandomOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		tr := NewTracker()
		n := 1 + r.IntN(50)
		for i := range n {
			tr.Add("l", fmt.Sprintf("%04d", i))
		}
		order := r.Perm(n)
		finished := make([]bool, n)
		last := ""
		for _, i := range order {
			finished[i] = true
			if cp, ok := tr.Done("l", fmt.Sprintf("%04d", i)); ok {
				var k int
				fmt.Sscan(cp, &k)
				for j := 0; j <= k; j++ {
					if !finished[j] {
						t.Fatalf("round %d: checkpoint %s passes unfinished %d", round, cp, j)
					}
				}
				last = cp
			}
		}
		if last != fmt.Sprintf("%04d", n-1) {
			t.Fatalf("round %d: final checkpoint %s of %d", round, last, n)
		}
	}
}

func TestTrackerOffsets(t *testing.T) {
	tr := NewTracker()
	for _, o := range []int64{10, 11, 13, 20} { // gaps: a compacted topic
		tr.AddOffsets("p", o)
	}
	steps := []struct {
		off, want int64
		adv       bool
	}{
		{11, 0, false}, // 10 unfinished
		{13, 0, false},
		{12, 0, false}, // unknown
		{10, 13, true}, // 10, 11, 13 done
		{10, 0, false}, // already checkpointed
		{20, 20, true},
	}
	for _, s := range steps {
		cp, adv := tr.DoneOffsets("p", s.off)
		if cp != s.want || adv != s.adv {
			t.Fatalf("DoneOffsets(%d) = %d %v, want %d %v", s.off, cp, adv, s.want, s.adv)
		}
	}
	if n := tr.Pending("p"); n != 0 {
		t.Errorf("pending %d", n)
	}
	if _, adv := tr.DoneOffsets("q", 1); adv {
		t.Error("unknown lane advanced")
	}
	tr.AddOffsets("p", 21, 22)
	tr.Forget("p")
	if n := tr.Pending("p"); n != 0 {
		t.Errorf("pending %d after Forget", n)
	}
}

// Property: in any completion order, the offset checkpoint never passes an
// unfinished record and ends at the last record, with records added while
// others finish.
func TestTrackerOffsetsRandomOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for round := range 200 {
		tr := NewTracker()
		n := 1 + r.IntN(200)
		offs := make([]int64, n)
		next := int64(r.IntN(5))
		for i := range offs {
			offs[i] = next
			next += 1 + int64(r.IntN(3))
		}
		finished := map[int64]bool{}
		var last int64 = -1
		added := 0
		for _, i := range r.Perm(n) {
			// Add in order, up to past the record about to finish.
			for added <= i || added < n && r.IntN(4) == 0 {
				tr.AddOffsets("l", offs[added])
				added++
			}
			finished[offs[i]] = true
			if cp, ok := tr.DoneOffsets("l", offs[i]); ok {
				for _, o := range offs {
					if o > cp {
						break
					}
					if !finished[o] {
						t.Fatalf("round %d: checkpoint %d passes unfinished %d", round, cp, o)
					}
				}
				if cp <= last {
					t.Fatalf("round %d: checkpoint went from %d to %d", round, last, cp)
				}
				last = cp
			}
		}
		if last != offs[n-1] || tr.Pending("l") != 0 {
			t.Fatalf("round %d: final checkpoint %d of %d, pending %d", round, last, offs[n-1], tr.Pending("l"))
		}
	}
}

// Several offsets per call, as Kafka hands out and finishes them.
func TestTrackerOffsetsBatches(t *testing.T) {
	tr := NewTracker()
	tr.AddOffsets("p", 1, 2, 3)
	tr.AddOffsets("p", 5, 8)
	if cp, adv := tr.DoneOffsets("p", 2, 3, 5); adv {
		t.Fatalf("advanced to %d past unfinished 1", cp)
	}
	if cp, adv := tr.DoneOffsets("p", 9, 1); cp != 5 || !adv {
		t.Fatalf("DoneOffsets(9, 1) = %d %v, want 5 true", cp, adv)
	}
	if n := tr.Pending("p"); n != 1 {
		t.Fatalf("pending %d, want 1", n)
	}
	if cp, adv := tr.DoneOffsets("p", 8); cp != 8 || !adv {
		t.Fatalf("DoneOffsets(8) = %d %v, want 8 true", cp, adv)
	}
}

// A partition with 1,000 records out, finished and handed out again in
// batches of 100 (Kafka's pattern); ns/op is per record.
func BenchmarkTrackerOffsets(b *testing.B) {
	tr := NewTracker()
	const window, batch = 1000, 100
	offs := make([]int64, 0, window)
	var next int64
	for ; next < window; next++ {
		offs = append(offs, next)
	}
	tr.AddOffsets("topic-0", offs...)
	var done int64
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		offs = offs[:0]
		for range batch {
			offs = append(offs, done)
			done++
		}
		tr.DoneOffsets("topic-0", offs...)
		for j := range offs {
			offs[j] = next
			next++
		}
		tr.AddOffsets("topic-0", offs...)
	}
}

func BenchmarkTrackerStrings(b *testing.B) {
	tr := NewTracker()
	const window = 1000
	seqs := make([]string, b.N+window)
	for i := range seqs {
		seqs[i] = fmt.Sprint(i)
	}
	for i := range window {
		tr.Add("topic-0", seqs[i])
	}
	b.ResetTimer()
	for i := range b.N {
		tr.Done("topic-0", seqs[i])
		tr.Add("topic-0", seqs[i+window])
	}
}

// PendingBytes counts the sizes of the records not yet checkpointed: a
// finished record behind an unfinished one still counts.
func TestTrackerPendingBytes(t *testing.T) {
	tr := NewTracker()
	tr.AddSized("a", "1", 10)
	tr.AddSized("a", "2", 20)
	tr.Add("a", "3") // no size
	tr.AddSized("a", "4", 40)
	steps := []struct {
		seq  string
		want int
	}{
		{"", 70},
		{"2", 70}, // 1 unfinished
		{"1", 40}, // 1 and 2 checkpointed; 3 (no size) is not done
		{"3", 40},
		{"4", 0},
	}
	for _, s := range steps {
		if s.seq != "" {
			tr.Done("a", s.seq)
		}
		if got := tr.PendingBytes("a"); got != s.want {
			t.Fatalf("after Done(%q): PendingBytes %d, want %d", s.seq, got, s.want)
		}
	}
	if got := tr.PendingBytes("b"); got != 0 {
		t.Errorf("PendingBytes of an unknown lane %d", got)
	}
}
