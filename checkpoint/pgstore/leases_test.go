package pgstore_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/esmd/esmd/checkpoint/pgstore"
	"github.com/esmd/esmd/internal/testenv"
)

func TestShare(t *testing.T) {
	for _, tc := range []struct {
		lanes  int
		live   []string
		worker string
		want   int
	}{
		{8, []string{"a", "b", "c"}, "a", 3},
		{8, []string{"a", "b", "c"}, "b", 3},
		{8, []string{"a", "b", "c"}, "c", 2},
		{8, []string{"a", "b", "c", "d"}, "d", 2},
		{2, []string{"a", "b", "c"}, "c", 0},
		{0, []string{"a"}, "a", 0},
		{5, nil, "a", 5},
		{5, []string{"a"}, "z", 2}, // not yet among the live: counted last
	} {
		if got := pgstore.Share(tc.lanes, tc.live, tc.worker); got != tc.want {
			t.Errorf("Share(%d, %v, %s) = %d, want %d", tc.lanes, tc.live, tc.worker, got, tc.want)
		}
	}
}

// fleet simulates workers that run the lease protocol on one mapping the
// way the stream poller does: Balance, then Release what it should hand
// over.
type fleet struct {
	t       *testing.T
	s       *pgstore.Store
	mapping string
	lanes   []string
	ttl     time.Duration
	owned   map[string]map[string]int64
	moves   int // lanes that changed hands
}

func newFleet(t *testing.T, lanes int, ttl time.Duration) *fleet {
	s := open(t, testenv.PostgreSQLDatabase(t))
	if err := s.SaveMapping(t.Context(), "m", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	f := &fleet{t: t, s: s, mapping: "m", ttl: ttl, owned: map[string]map[string]int64{}}
	for i := range lanes {
		f.lanes = append(f.lanes, fmt.Sprintf("shardId-%012d", i))
	}
	return f
}

// round runs one Balance (and Release) of each worker, in order.
func (f *fleet) round(workers ...string) {
	f.t.Helper()
	ctx := f.t.Context()
	for _, w := range workers {
		owned, handoff, err := f.s.Balance(ctx, f.mapping, w, f.lanes, f.ttl)
		if err != nil {
			f.t.Fatal(err)
		}
		for l := range owned {
			if _, had := f.owned[w][l]; !had {
				f.moves++
			}
		}
		if err := f.s.Release(ctx, f.mapping, w, handoff); err != nil {
			f.t.Fatal(err)
		}
		for _, l := range handoff {
			delete(owned, l)
		}
		f.owned[w] = owned
		f.check()
	}
}

// check: no lane has two owners in the store.
func (f *fleet) check() {
	f.t.Helper()
	leases, err := f.s.LaneOwners(f.t.Context(), f.mapping)
	if err != nil {
		f.t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, l := range leases {
		if seen[l.Lane] {
			f.t.Fatalf("lane %s twice", l.Lane)
		}
		seen[l.Lane] = true
	}
}

// counts returns the lanes each worker holds in the store.
func (f *fleet) counts() map[string]int {
	f.t.Helper()
	leases, err := f.s.LaneOwners(f.t.Context(), f.mapping)
	if err != nil {
		f.t.Fatal(err)
	}
	out := map[string]int{}
	for _, l := range leases {
		if l.Owner != "" {
			out[l.Owner]++
		}
	}
	return out
}

func spread(c map[string]int) int {
	vs := slices.Collect(maps.Values(c))
	return slices.Max(vs) - slices.Min(vs)
}

// TestBalanceSpreadsLanesWithoutStealing: three workers settle 8 lanes
// 3/3/2, never two owners for one lane; a fourth joins and takes exactly its 2 lanes, handed over by the
// others (no lane changes hands twice); once settled, nothing moves.
func TestBalanceSpreadsLanesWithoutStealing(t *testing.T) {
	f := newFleet(t, 8, time.Hour)
	f.round("w1", "w2", "w3")
	f.round("w1", "w2", "w3")
	f.round("w1", "w2", "w3")
	if c := f.counts(); c["w1"]+c["w2"]+c["w3"] != 8 || spread(c) > 1 || len(c) != 3 {
		t.Fatalf("three workers hold %v", c)
	}
	// (The first worker took every lane before the others were live,
	// and handed some over: 8 lanes took 13 moves to settle.)
	f.moves = 0
	for range 4 {
		f.round("w1", "w2", "w3", "w4")
	}
	c := f.counts()
	if c["w4"] != 2 || spread(c) != 0 || len(c) != 4 {
		t.Fatalf("four workers hold %v", c)
	}
	if f.moves != 2 {
		t.Errorf("%d lane moves when a fourth worker joined, want 2", f.moves)
	}
	// Settled: more rounds move nothing.
	f.moves = 0
	f.round("w1", "w2", "w3", "w4")
	if f.moves != 0 {
		t.Errorf("%d lane moves once settled", f.moves)
	}
}

// TestBalanceTakesOverExpiredLeases: a worker that stops renewing loses
// its lanes once its leases expire, with their counters incremented.
func TestBalanceTakesOverExpiredLeases(t *testing.T) {
	f := newFleet(t, 4, time.Second)
	f.round("w1", "w2")
	f.round("w1", "w2")
	before := maps.Clone(f.owned["w2"])
	if len(before) != 2 {
		t.Fatalf("w2 holds %v", before)
	}
	// w2 stops; w1 keeps balancing until it holds every lane.
	testenv.EventuallyTrue(t, 20*time.Second, "w1 takes w2's lanes", func() bool {
		f.round("w1")
		return len(f.owned["w1"]) == 4
	})
	for l, c := range before {
		if got := f.owned["w1"][l]; got != c+1 {
			t.Errorf("lane %s: counter %d after takeover, want %d", l, got, c+1)
		}
	}
}

// TestFencedWrites: once a lane changed hands, its former owner's writes
// at its old counter are refused, in the same statement, and its
// successor's are kept.
func TestFencedWrites(t *testing.T) {
	ctx := t.Context()
	f := newFleet(t, 2, 500*time.Millisecond)
	f.round("w1")
	lane := f.lanes[0]
	old := f.owned["w1"][lane]
	lost, err := f.s.SetPositionsFenced(ctx, f.mapping, "w1", map[string]string{lane: "10", f.lanes[1]: "20"}, f.owned["w1"])
	if err != nil || len(lost) != 0 {
		t.Fatalf("write of the owner: %v %v", lost, err)
	}
	// w1 is paused past its leases; w2 takes them over and checkpoints.
	testenv.EventuallyTrue(t, 20*time.Second, "w2 takes the lanes", func() bool {
		f.round("w2")
		return len(f.owned["w2"]) == 2
	})
	if _, err := f.s.SetPositionsFenced(ctx, f.mapping, "w2", map[string]string{lane: "30"}, f.owned["w2"]); err != nil {
		t.Fatal(err)
	}
	// w1 resumes and writes at its old counter: refused.
	lost, err = f.s.SetPositionsFenced(ctx, f.mapping, "w1", map[string]string{lane: "15", f.lanes[1]: "25"}, map[string]int64{lane: old, f.lanes[1]: old})
	if err != nil || !slices.Equal(lost, f.lanes) {
		t.Fatalf("stale write: lost %v, err %v", lost, err)
	}
	all, err := f.s.Positions(ctx, f.mapping)
	if err != nil || all[lane] != "30" || all[f.lanes[1]] != "20" {
		t.Errorf("positions after the stale write: %v %v", all, err)
	}
	// And its renewal tells it it holds nothing.
	owned, _, err := f.s.Balance(ctx, f.mapping, "w1", f.lanes, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for l := range owned {
		if f.owned["w2"][l] != 0 {
			t.Errorf("w1 still holds %s", l)
		}
	}
}

// TestLeasesGoWithTheirMapping: deleting a mapping deletes its leases.
func TestLeasesGoWithTheirMapping(t *testing.T) {
	f := newFleet(t, 3, time.Hour)
	f.round("w1")
	if err := f.s.DeleteMapping(context.Background(), f.mapping); err != nil {
		t.Fatal(err)
	}
	if leases, err := f.s.LaneOwners(t.Context(), f.mapping); err != nil || len(leases) != 0 {
		t.Errorf("leases after delete: %v %v", leases, err)
	}
	// A worker still balancing the deleted mapping gets an error, not a
	// lease.
	if _, _, err := f.s.Balance(t.Context(), f.mapping, "w1", f.lanes, time.Hour); err == nil {
		t.Error("balance of a deleted mapping")
	}
}

// TestResetPositionsTakesTheLeases: a replay's positions are written and
// every lease of the mapping is taken from its holder, whose writes at its
// old counters are refused from then on.
func TestResetPositionsTakesTheLeases(t *testing.T) {
	ctx := t.Context()
	f := newFleet(t, 2, time.Hour)
	f.round("w1")
	held := maps.Clone(f.owned["w1"])
	if err := f.s.ResetPositions(ctx, f.mapping, map[string]string{f.lanes[0]: "TRIM_HORIZON", f.lanes[1]: "TRIM_HORIZON"}); err != nil {
		t.Fatal(err)
	}
	leases, err := f.s.LaneOwners(ctx, f.mapping)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range leases {
		if l.Owner != "" || l.Counter != held[l.Lane]+1 {
			t.Errorf("lease after reset: %+v", l)
		}
	}
	lost, err := f.s.SetPositionsFenced(ctx, f.mapping, "w1", map[string]string{f.lanes[0]: "9"}, held)
	if err != nil || len(lost) != 1 {
		t.Fatalf("write at the old counter: lost %v, err %v", lost, err)
	}
	if pos, _, _ := f.s.Position(ctx, f.mapping, f.lanes[0]); pos != "TRIM_HORIZON" {
		t.Errorf("position after reset and a stale write: %s", pos)
	}
}
