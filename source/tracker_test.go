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
