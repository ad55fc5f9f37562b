package pgstore_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/esmd/esmd/checkpoint/pgstore"
)

// TestConcurrencyShares: a queue mapping's cap (2..1000, what AWS allows
// for MaximumConcurrency, and Amazon MQ's 1 and 5) split among 1..N live
// workers: the shares add up to the cap, differ by at most one, the
// remainder goes one each to the first workers by id, and with more
// workers than the cap the last ones get 0.
func TestConcurrencyShares(t *testing.T) {
	for _, tc := range []struct {
		limit, workers int
		want           []int // by rank; nil: checked by the invariants only
	}{
		{limit: 1, workers: 1, want: []int{1}},
		{limit: 1, workers: 3, want: []int{1, 0, 0}},
		{limit: 2, workers: 1, want: []int{2}},
		{limit: 2, workers: 2, want: []int{1, 1}},
		{limit: 2, workers: 3, want: []int{1, 1, 0}},
		{limit: 5, workers: 2, want: []int{3, 2}},
		{limit: 5, workers: 3, want: []int{2, 2, 1}},
		{limit: 5, workers: 7, want: []int{1, 1, 1, 1, 1, 0, 0}},
		{limit: 10, workers: 4, want: []int{3, 3, 2, 2}},
		{limit: 1000, workers: 1, want: []int{1000}},
		{limit: 1000, workers: 3, want: []int{334, 333, 333}},
		{limit: 1000, workers: 7, want: []int{143, 143, 143, 143, 143, 143, 142}},
		{limit: 3, workers: 50},
		{limit: 999, workers: 64},
		{limit: 1000, workers: 1001},
	} {
		t.Run(fmt.Sprintf("%d/%d", tc.limit, tc.workers), func(t *testing.T) {
			live := make([]string, tc.workers)
			for i := range live {
				live[i] = fmt.Sprintf("w%04d", i)
			}
			sum, lo, hi := 0, tc.limit, 0
			for i, w := range live {
				got := pgstore.Share(tc.limit, live, w)
				if tc.want != nil && got != tc.want[i] {
					t.Errorf("rank %d: share %d, want %d", i, got, tc.want[i])
				}
				if want := tc.limit / tc.workers; i < tc.limit%tc.workers {
					want++
					if got != want {
						t.Errorf("rank %d (gets a remainder): share %d, want %d", i, got, want)
					}
				} else if got != want {
					t.Errorf("rank %d: share %d, want %d", i, got, want)
				}
				sum += got
				lo, hi = min(lo, got), max(hi, got)
			}
			if sum != tc.limit || hi-lo > 1 {
				t.Errorf("shares add up to %d (want %d), spread %d..%d", sum, tc.limit, lo, hi)
			}
		})
	}
	// Every cap AWS allows, over 1..12 workers.
	for limit := 2; limit <= 1000; limit++ {
		for n := 1; n <= 12; n++ {
			live := make([]string, n)
			sum := 0
			for i := range live {
				live[i] = fmt.Sprintf("w%02d", i)
			}
			for _, w := range live {
				sum += pgstore.Share(limit, live, w)
			}
			if sum != limit {
				t.Fatalf("cap %d over %d workers: shares add up to %d", limit, n, sum)
			}
		}
	}
}

// TestConcurrencyShareFollowsLiveWorkers: shares come from the workers
// present in PostgreSQL; a worker that leaves, or whose presence expires,
// gives its share to the others at their next renewal.
func TestConcurrencyShareFollowsLiveWorkers(t *testing.T) {
	ctx := t.Context()
	f := newFleet(t, 0, time.Hour)
	share := func(w string, ttl time.Duration) int {
		t.Helper()
		n, err := f.s.ConcurrencyShare(ctx, f.mapping, w, 5, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if got := share("b", time.Hour); got != 5 {
		t.Errorf("alone: %d, want 5", got)
	}
	if got := share("a", time.Hour); got != 3 {
		t.Errorf("a with b: %d, want 3", got)
	}
	if got := share("b", time.Hour); got != 2 {
		t.Errorf("b with a: %d, want 2", got)
	}
	// c's presence expires at once: the next renewal forgets it.
	if got := share("c", -time.Second); got != 1 {
		t.Errorf("c with a and b: %d, want 1", got)
	}
	if got := share("b", time.Hour); got != 2 {
		t.Errorf("b after c expired: %d, want 2", got)
	}
	if err := f.s.LeaveShare(ctx, f.mapping, "a"); err != nil {
		t.Fatal(err)
	}
	if got := share("b", time.Hour); got != 5 {
		t.Errorf("b after a left: %d, want 5", got)
	}
	// The stream leases count the same workers (one presence per worker
	// and mapping).
	if _, _, err := f.s.Balance(ctx, f.mapping, "a", nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	if got := share("b", time.Hour); got != 2 {
		t.Errorf("b after a balanced: %d, want 2", got)
	}
}
