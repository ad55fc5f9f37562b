package esm

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/esmd/esmd/checkpoint/pgstore"
	"github.com/esmd/esmd/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// liveRunner records the mappings running on one engine and their
// reporters.
type liveRunner struct {
	mu        sync.Mutex
	running   map[string]*Mapping
	reporters map[string]Reporter
}

func newLiveRunner() *liveRunner {
	return &liveRunner{running: map[string]*Mapping{}, reporters: map[string]Reporter{}}
}

func (r *liveRunner) Run(ctx context.Context, m *Mapping, rep Reporter) error {
	r.mu.Lock()
	r.running[m.UUID], r.reporters[m.UUID] = m, rep
	r.mu.Unlock()
	<-ctx.Done()
	r.mu.Lock()
	if r.running[m.UUID] == m {
		delete(r.running, m.UUID)
	}
	r.mu.Unlock()
	return ctx.Err()
}

// batchSize is the BatchSize of the running pipeline of id; 0 when none
// runs.
func (r *liveRunner) batchSize(id string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m := r.running[id]; m != nil {
		return *m.Config.BatchSize
	}
	return 0
}

func (r *liveRunner) reporter(id string) Reporter {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reporters[id]
}

// deafStore is a SharedStore that hears no notifications: its engine's
// copy of a mapping stays stale until a write of its own is refused.
type deafStore struct{ *pgstore.Store }

func (deafStore) Watch(ctx context.Context, _ *slog.Logger, _ func(string)) error {
	<-ctx.Done()
	return ctx.Err()
}

func sharedEngine(t *testing.T, s SharedStore, r Runner) *Engine {
	t.Helper()
	return newTestEngine(t, WithStore(s), WithRunner(SourceSQS, r))
}

func openPG(t *testing.T, dsn string) *pgstore.Store {
	t.Helper()
	s, err := pgstore.Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestSharedStoreOneControlPlane: two engines on one PostgreSQL store.
// What the API of one does, the other lists, and runs or stops.
func TestSharedStoreOneControlPlane(t *testing.T) {
	ctx := context.Background()
	dsn := testenv.PostgreSQLDatabase(t)
	ra, rb := newLiveRunner(), newLiveRunner()
	a := sharedEngine(t, openPG(t, dsn), ra)
	b := sharedEngine(t, openPG(t, dsn), rb)
	const within = 10 * time.Second

	m, err := a.Create(ctx, &Config{FunctionName: sp("f"), EventSourceArn: sp(sqsArn), BatchSize: ip(5)})
	if err != nil {
		t.Fatal(err)
	}
	testenv.EventuallyTrue(t, within, "b reads the new mapping", func() bool {
		got, err := b.Get(ctx, m.UUID)
		return err == nil && got.State == StateEnabled
	})
	testenv.EventuallyTrue(t, within, "both engines run the new mapping", func() bool { return ra.batchSize(m.UUID) == 5 && rb.batchSize(m.UUID) == 5 })
	if l, _, _ := b.List(ctx, ListInput{}); len(l) != 1 || l[0].UUID != m.UUID {
		t.Fatalf("b lists %v", l)
	}

	// An update through a restarts the pipelines of both with it.
	if _, err := a.Update(ctx, m.UUID, &Config{BatchSize: ip(7)}); err != nil {
		t.Fatal(err)
	}
	testenv.EventuallyTrue(t, within, "both engines run the update", func() bool { return ra.batchSize(m.UUID) == 7 && rb.batchSize(m.UUID) == 7 })

	// Disabled through b: a stops too.
	waitState(t, b, m.UUID, StateEnabled)
	if _, err := b.Update(ctx, m.UUID, &Config{Enabled: bp(false)}); err != nil {
		t.Fatal(err)
	}
	waitState(t, a, m.UUID, StateDisabled)
	testenv.EventuallyTrue(t, within, "both engines stop", func() bool { return ra.batchSize(m.UUID) == 0 && rb.batchSize(m.UUID) == 0 })

	// Enabled through a, LastProcessingResult written by b's pipeline is
	// what a reads.
	if _, err := a.Update(ctx, m.UUID, &Config{Enabled: bp(true)}); err != nil {
		t.Fatal(err)
	}
	waitState(t, b, m.UUID, StateEnabled)
	testenv.EventuallyTrue(t, within, "both engines run again", func() bool { return ra.batchSize(m.UUID) == 7 && rb.batchSize(m.UUID) == 7 })
	rb.reporter(m.UUID).ProcessingResult("PROBLEM: from b")
	testenv.EventuallyTrue(t, within, "a reads b's processing result", func() bool {
		got, err := a.Get(ctx, m.UUID)
		return err == nil && got.LastProcessingResult == "PROBLEM: from b"
	})

	// Tags through b, read through a.
	if err := b.TagResource(ctx, m.Arn, map[string]string{"team": "b"}); err != nil {
		t.Fatal(err)
	}
	testenv.EventuallyTrue(t, within, "a reads b's tags", func() bool {
		tags, err := a.ListTags(ctx, m.Arn)
		return err == nil && tags["team"] == "b"
	})

	// Deleted through b: gone from a, and stopped everywhere.
	if _, err := b.Delete(ctx, m.UUID); err != nil {
		t.Fatal(err)
	}
	testenv.EventuallyTrue(t, within, "a forgets the deleted mapping", func() bool {
		_, err := a.Get(ctx, m.UUID)
		return err != nil
	})
	testenv.EventuallyTrue(t, within, "both engines stop", func() bool { return ra.batchSize(m.UUID) == 0 && rb.batchSize(m.UUID) == 0 })
}

// TestSharedStoreStaleWrites: an engine whose copy is stale (it heard no
// notification) never writes over a newer change: its write is refused,
// it reloads, and a user's change is applied to the newer mapping.
func TestSharedStoreStaleWrites(t *testing.T) {
	ctx := context.Background()
	dsn := testenv.PostgreSQLDatabase(t)
	ra, rb := newLiveRunner(), newLiveRunner()
	a := sharedEngine(t, openPG(t, dsn), ra)
	m, err := a.Create(ctx, &Config{FunctionName: sp("f"), EventSourceArn: sp(sqsArn), BatchSize: ip(5)})
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, a, m.UUID, StateEnabled)
	b := sharedEngine(t, deafStore{openPG(t, dsn)}, rb)
	testenv.EventuallyTrue(t, 10*time.Second, "b runs the mapping", func() bool { return rb.batchSize(m.UUID) == 5 })

	// a disables it; b does not hear of it.
	if _, err := a.Update(ctx, m.UUID, &Config{Enabled: bp(false)}); err != nil {
		t.Fatal(err)
	}
	waitState(t, a, m.UUID, StateDisabled)
	if got, _ := b.Get(ctx, m.UUID); got.State != StateEnabled {
		t.Fatalf("b heard of the change: %s", got.State)
	}
	// b's pipeline reports: the write is refused, b reloads, sees the
	// mapping disabled and stops its pipeline. The stored mapping stays
	// disabled.
	rb.reporter(m.UUID).ProcessingResult("PROBLEM: stale")
	if got, _ := b.Get(ctx, m.UUID); got.State != StateDisabled || got.LastProcessingResult == "PROBLEM: stale" {
		t.Fatalf("after a stale report b has %s %q", got.State, got.LastProcessingResult)
	}
	testenv.EventuallyTrue(t, 10*time.Second, "b stops", func() bool { return rb.batchSize(m.UUID) == 0 })

	// a changes it again; b's update is applied over a's change.
	if _, err := a.Update(ctx, m.UUID, &Config{BatchSize: ip(8)}); err != nil {
		t.Fatal(err)
	}
	waitState(t, a, m.UUID, StateDisabled)
	got, err := b.Update(ctx, m.UUID, &Config{MaximumBatchingWindowInSeconds: ip(3)})
	if err != nil {
		t.Fatal(err)
	}
	if *got.Config.BatchSize != 8 || *got.Config.MaximumBatchingWindowInSeconds != 3 || got.Enabled() {
		t.Errorf("b's update over a's: batch %d window %d enabled %v", *got.Config.BatchSize, *got.Config.MaximumBatchingWindowInSeconds, got.Enabled())
	}
	testenv.EventuallyTrue(t, 10*time.Second, "a reads b's update", func() bool {
		got, err := a.Get(ctx, m.UUID)
		return err == nil && got.State == StateDisabled && *got.Config.MaximumBatchingWindowInSeconds == 3 && *got.Config.BatchSize == 8
	})
}

// TestSharedStoreConcurrentCreates: engines asked at once to create the
// same mapping create one; the others answer AWS's 409, as one engine
// does for a second create.
func TestSharedStoreConcurrentCreates(t *testing.T) {
	ctx := context.Background()
	dsn := testenv.PostgreSQLDatabase(t)
	const n = 4
	engines := make([]*Engine, n)
	for i := range engines {
		engines[i] = sharedEngine(t, openPG(t, dsn), newLiveRunner())
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, e := range engines {
		wg.Go(func() {
			_, errs[i] = e.Create(ctx, &Config{FunctionName: sp("f"), EventSourceArn: sp(sqsArn)})
		})
	}
	wg.Wait()
	created := 0
	for _, err := range errs {
		if err == nil {
			created++
			continue
		}
		if ae := asAPIError(t, err); ae.Type != ErrTypeResourceConflict {
			t.Errorf("create: %v", err)
		}
	}
	if created != 1 {
		t.Errorf("%d engines created the mapping", created)
	}
	stored, err := openPG(t, dsn).LoadMappings(ctx)
	if err != nil || len(stored) != 1 {
		t.Errorf("stored %d mappings (%v)", len(stored), err)
	}
}
