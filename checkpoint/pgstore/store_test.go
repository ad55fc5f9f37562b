package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/esmd/esmd/checkpoint"
	"github.com/esmd/esmd/checkpoint/pgstore"
	"github.com/esmd/esmd/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// store is what both implementations provide.
type store interface {
	SaveMapping(ctx context.Context, uuid string, data []byte) error
	DeleteMapping(ctx context.Context, uuid string) error
	LoadMappings(ctx context.Context) (map[string][]byte, error)
	Position(ctx context.Context, mapping, lane string) (string, bool, error)
	SetPosition(ctx context.Context, mapping, lane, pos string) error
	SetPositions(ctx context.Context, mapping string, positions map[string]string) error
	Positions(ctx context.Context, mapping string) (map[string]string, error)
	Close() error
}

// impls open a store and return a function that opens it again (another
// process, or the same one after a restart).
var impls = []struct {
	name string
	open func(t *testing.T) func() (store, error)
}{
	{"bbolt", func(t *testing.T) func() (store, error) {
		dir := t.TempDir()
		return func() (store, error) { return checkpoint.Open(dir) }
	}},
	{"postgres", func(t *testing.T) func() (store, error) {
		dsn := testenv.PostgreSQLDatabase(t)
		return func() (store, error) { return pgstore.Open(t.Context(), dsn) }
	}},
}

// TestMappingsAndPositionsSurviveReopen is the bbolt store's test of the
// same name, run on both stores.
func TestMappingsAndPositionsSurviveReopen(t *testing.T) {
	for _, impl := range impls {
		t.Run(impl.name, func(t *testing.T) {
			ctx := t.Context()
			open := impl.open(t)
			s, err := open()
			if err != nil {
				t.Fatal(err)
			}
			if err := s.SaveMapping(ctx, "a", []byte(`{"x":1}`)); err != nil {
				t.Fatal(err)
			}
			if err := s.SetPosition(ctx, "a", "shardId-000", "49590338271490256608559692538361571095921575989136588898"); err != nil {
				t.Fatal(err)
			}
			if err := s.SetPosition(ctx, "a", "shardId-000", "49590338271490256608559692538361571095921575989136588899"); err != nil {
				t.Fatal(err)
			}
			s.Close()

			s, err = open()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ms, err := s.LoadMappings(ctx)
			if err != nil || len(ms) != 1 || string(ms["a"]) != `{"x":1}` {
				t.Fatalf("mappings %q %v", ms, err)
			}
			pos, ok, err := s.Position(ctx, "a", "shardId-000")
			if err != nil || !ok || !strings.HasSuffix(pos, "899") {
				t.Fatalf("position %q %v %v", pos, ok, err)
			}
			if _, ok, _ := s.Position(ctx, "a", "other"); ok {
				t.Error("position for an unknown lane")
			}
			if _, ok, _ := s.Position(ctx, "unknown", "shardId-000"); ok {
				t.Error("position for an unknown mapping")
			}
			all, _ := s.Positions(ctx, "a")
			if len(all) != 1 {
				t.Errorf("positions %v", all)
			}
			// Several lanes in one write, next to the one already stored.
			if err := s.SetPositions(ctx, "a", map[string]string{"shardId-001": "7", "shardId-002": "SHARD_END"}); err != nil {
				t.Fatal(err)
			}
			if err := s.SetPositions(ctx, "a", nil); err != nil {
				t.Fatal(err)
			}
			if all, _ = s.Positions(ctx, "a"); len(all) != 3 || all["shardId-001"] != "7" || all["shardId-002"] != "SHARD_END" || !strings.HasSuffix(all["shardId-000"], "899") {
				t.Errorf("positions after SetPositions %v", all)
			}
			// A second save replaces the definition.
			if err := s.SaveMapping(ctx, "a", []byte(`{"x":2}`)); err != nil {
				t.Fatal(err)
			}
			if ms, _ := s.LoadMappings(ctx); string(ms["a"]) != `{"x":2}` {
				t.Errorf("mappings after a second save %q", ms)
			}
			// Deleting a mapping removes its positions; deleting it again
			// is not an error.
			if err := s.DeleteMapping(ctx, "a"); err != nil {
				t.Fatal(err)
			}
			if err := s.DeleteMapping(ctx, "a"); err != nil {
				t.Fatal(err)
			}
			if _, ok, _ := s.Position(ctx, "a", "shardId-000"); ok {
				t.Error("position survived mapping deletion")
			}
			if all, _ := s.Positions(ctx, "a"); len(all) != 0 {
				t.Errorf("positions survived mapping deletion: %v", all)
			}
			if ms, _ := s.LoadMappings(ctx); len(ms) != 0 {
				t.Errorf("mappings after deletion %v", ms)
			}
		})
	}
}

// TestPositionsOfADeletedMappingAreNotKept: a pipeline that is still
// stopping when another worker deleted its mapping writes nothing.
func TestPositionsOfADeletedMappingAreNotKept(t *testing.T) {
	ctx := t.Context()
	s := open(t, testenv.PostgreSQLDatabase(t))
	if err := s.SetPosition(ctx, "gone", "shardId-000", "1"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPositions(ctx, "gone", map[string]string{"shardId-001": "1"}); err != nil {
		t.Fatal(err)
	}
	if all, err := s.Positions(ctx, "gone"); err != nil || len(all) != 0 {
		t.Errorf("positions of a mapping that is not stored: %v %v", all, err)
	}
}

func open(t *testing.T, dsn string) *pgstore.Store {
	t.Helper()
	s, err := pgstore.Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestConcurrentOpenMigratesOnce: workers that start together on an empty
// database all open it, and the schema is migrated once.
func TestConcurrentOpenMigratesOnce(t *testing.T) {
	dsn := testenv.PostgreSQLDatabase(t)
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	stores := make([]*pgstore.Store, n)
	for i := range n {
		wg.Go(func() { stores[i], errs[i] = pgstore.Open(t.Context(), dsn) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("worker %d: %v", i, err)
			continue
		}
		defer stores[i].Close()
	}
	// One row per version: each migration ran once.
	ctx := t.Context()
	rows := queryInts(t, dsn, "SELECT version FROM esmd_schema_migrations ORDER BY version")
	want := make([]int, pgstore.SchemaVersion)
	for i := range want {
		want[i] = i + 1
	}
	if fmt.Sprint(rows) != fmt.Sprint(want) {
		t.Errorf("schema versions %v, want %v", rows, want)
	}
	// And the store works.
	if err := stores[0].SaveMapping(ctx, "a", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if ms, err := stores[n-1].LoadMappings(ctx); err != nil || len(ms) != 1 {
		t.Errorf("mappings seen by another worker: %v %v", ms, err)
	}
}

// TestNewerSchemaIsRefused: a database a newer esmd migrated is not
// touched.
func TestNewerSchemaIsRefused(t *testing.T) {
	dsn := testenv.PostgreSQLDatabase(t)
	open(t, dsn)
	exec(t, dsn, fmt.Sprintf("INSERT INTO esmd_schema_migrations (version) VALUES (%d)", pgstore.SchemaVersion+1))
	_, err := pgstore.Open(t.Context(), dsn)
	if err == nil || !strings.Contains(err.Error(), "newer than this esmd") {
		t.Fatalf("open of a newer schema: %v", err)
	}
}

func TestRevisions(t *testing.T) {
	ctx := t.Context()
	s := open(t, testenv.PostgreSQLDatabase(t))
	steps := []struct {
		name    string
		do      func() (int64, bool, error)
		wantRev int64
		wantOK  bool
	}{
		{"create", func() (int64, bool, error) { return s.SaveMappingIf(ctx, "a", []byte("1"), 0) }, 1, true},
		{"create again", func() (int64, bool, error) { return s.SaveMappingIf(ctx, "a", []byte("x"), 0) }, 0, false},
		{"update at 1", func() (int64, bool, error) { return s.SaveMappingIf(ctx, "a", []byte("2"), 1) }, 2, true},
		{"stale update at 1", func() (int64, bool, error) { return s.SaveMappingIf(ctx, "a", []byte("x"), 1) }, 0, false},
		{"blind save", func() (int64, bool, error) { return 3, true, s.SaveMapping(ctx, "a", []byte("3")) }, 3, true},
		{"update of a missing mapping", func() (int64, bool, error) { return s.SaveMappingIf(ctx, "b", []byte("x"), 4) }, 0, false},
		{"stale delete", func() (int64, bool, error) { ok, err := s.DeleteMappingIf(ctx, "a", 2); return 0, ok, err }, 0, false},
	}
	for _, st := range steps {
		rev, ok, err := st.do()
		if err != nil || rev != st.wantRev || ok != st.wantOK {
			t.Fatalf("%s: revision %d ok %v err %v; want %d %v", st.name, rev, ok, err, st.wantRev, st.wantOK)
		}
	}
	data, rev, err := s.LoadMapping(ctx, "a")
	if err != nil || rev != 3 || string(data) != "3" {
		t.Fatalf("LoadMapping: %q %d %v", data, rev, err)
	}
	if _, revs, err := s.LoadMappingRevisions(ctx); err != nil || len(revs) != 1 || revs["a"] != 3 {
		t.Fatalf("LoadMappingRevisions: %v %v", revs, err)
	}
	if ok, err := s.DeleteMappingIf(ctx, "a", 3); !ok || err != nil {
		t.Fatalf("delete at 3: %v %v", ok, err)
	}
	if _, rev, err := s.LoadMapping(ctx, "a"); rev != 0 || err != nil {
		t.Fatalf("LoadMapping after delete: %d %v", rev, err)
	}
}

// TestWatch: a worker hears of every change any worker makes, and of a
// lost connection ("" after it listens again).
func TestWatch(t *testing.T) {
	dsn := testenv.PostgreSQLDatabase(t)
	a, b := open(t, dsn), open(t, dsn)
	ctx, cancel := context.WithCancel(t.Context())
	var (
		mu   sync.Mutex
		seen []string
	)
	done := make(chan error, 1)
	go func() {
		done <- b.Watch(ctx, nil, func(id string) {
			mu.Lock()
			seen = append(seen, id)
			mu.Unlock()
		})
	}()
	got := func() string {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Sprintf("%d:%s", len(seen), strings.Join(seen, ","))
	}
	testenv.EventuallyTrue(t, 10*time.Second, "the first callback", func() bool { return got() == "1:" })
	if err := a.SaveMapping(ctx, "m1", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.SaveMappingIf(ctx, "m2", []byte("{}"), 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.SaveMappingIf(ctx, "m2", []byte("{}"), 7); err != nil { // stale: no notification
		t.Fatal(err)
	}
	if err := a.DeleteMapping(ctx, "m1"); err != nil {
		t.Fatal(err)
	}
	testenv.EventuallyTrue(t, 10*time.Second, "three notifications", func() bool { return got() == "4:,m1,m2,m1" })
	// Another session ends the listener's connection: Watch reconnects
	// and says that anything may have changed.
	exec(t, dsn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND datname = current_database()")
	testenv.EventuallyTrue(t, 10*time.Second, "the callback after reconnecting", func() bool { return got() == "5:,m1,m2,m1," })
	if err := a.SaveMapping(ctx, "m3", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	testenv.EventuallyTrue(t, 10*time.Second, "a notification after reconnecting", func() bool { return got() == "6:,m1,m2,m1,,m3" })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Watch returned %v", err)
	}
}

func TestRedact(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres://esmd:s3cret@db:5432/esmd?sslmode=disable", "postgres://esmd:xxxxx@db:5432/esmd?sslmode=disable"},
		{"postgresql://esmd@db/esmd?password=s3cret", "postgresql://esmd@db/esmd?password=xxxxx"},
		{"postgres://db/esmd", "postgres://db/esmd"},
		{"host=db user=esmd password=s3cret dbname=esmd", "host=db user=esmd password=xxxxx dbname=esmd"},
		{"host=db password = 's3 cret' dbname=esmd", "host=db password = xxxxx dbname=esmd"},
		{"postgres://esmd:s3cret@db:bad-port/%zz", "postgres://(unparsable URL)"},
	} {
		if got := pgstore.Redact(tc.in); got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestErrorsDoNotShowThePassword: neither a connection string that does
// not parse nor a server that cannot be reached puts the password in the
// error.
func TestErrorsDoNotShowThePassword(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for _, dsn := range []string{
		"postgres://esmd:s3cret@127.0.0.1:9/esmd?sslmode=disable&connect_timeout=2",
		"postgres://esmd:s3cret@127.0.0.1:9/esmd?sslmode=nonsense",
		"host=127.0.0.1 port=9 user=esmd password=s3cret sslmode=disable connect_timeout=2",
	} {
		_, err := pgstore.Open(ctx, dsn)
		if err == nil {
			t.Fatalf("%s opened", pgstore.Redact(dsn))
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("error shows the password: %v", err)
		}
	}
}
