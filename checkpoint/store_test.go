package checkpoint

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMappingsAndPositionsSurviveReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(dir)
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

	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ms, err := s.LoadMappings(ctx)
	if err != nil || string(ms["a"]) != `{"x":1}` {
		t.Fatalf("mappings %v %v", ms, err)
	}
	pos, ok, err := s.Position(ctx, "a", "shardId-000")
	if err != nil || !ok || !strings.HasSuffix(pos, "899") {
		t.Fatalf("position %q %v %v", pos, ok, err)
	}
	if _, ok, _ := s.Position(ctx, "a", "other"); ok {
		t.Error("position for an unknown lane")
	}
	all, _ := s.Positions(ctx, "a")
	if len(all) != 1 {
		t.Errorf("positions %v", all)
	}
	// Several lanes in one write, next to the one already stored.
	if err := s.SetPositions(ctx, "a", map[string]string{"shardId-001": "7", "shardId-002": "SHARD_END"}); err != nil {
		t.Fatal(err)
	}
	if all, _ = s.Positions(ctx, "a"); len(all) != 3 || all["shardId-001"] != "7" || all["shardId-002"] != "SHARD_END" || !strings.HasSuffix(all["shardId-000"], "899") {
		t.Errorf("positions after SetPositions %v", all)
	}
	// Deleting a mapping removes its positions and leases too.
	if _, err := s.Acquire(ctx, "a", "shardId-000", "w1", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMapping(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Position(ctx, "a", "shardId-000"); ok {
		t.Error("position survived mapping deletion")
	}
	if _, err := s.Acquire(ctx, "a", "shardId-000", "w2", time.Minute); err != nil {
		t.Errorf("lease survived mapping deletion: %v", err)
	}
}

func TestLeases(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Unix(1000, 0)
	s.now = func() time.Time { return now }
	l1, err := s.Acquire(ctx, "m", "p0", "w1", 10*time.Second)
	if err != nil || l1.Counter != 1 {
		t.Fatalf("acquire: %+v %v", l1, err)
	}
	if _, err := s.Acquire(ctx, "m", "p0", "w2", 10*time.Second); !errors.Is(err, ErrLeaseHeld) {
		t.Fatalf("second owner: %v", err)
	}
	l2, err := s.Acquire(ctx, "m", "p0", "w1", 10*time.Second)
	if err != nil || l2.Counter != 2 {
		t.Fatalf("renew: %+v %v", l2, err)
	}
	now = now.Add(11 * time.Second)
	l3, err := s.Acquire(ctx, "m", "p0", "w2", 10*time.Second)
	if err != nil || l3.Owner != "w2" || l3.Counter != 3 {
		t.Fatalf("take over expired lease: %+v %v", l3, err)
	}
	if err := s.Release(ctx, "m", "p0", "w1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Acquire(ctx, "m", "p0", "w1", 10*time.Second); !errors.Is(err, ErrLeaseHeld) {
		t.Fatalf("release by a non-owner freed the lease: %v", err)
	}
	if err := s.Release(ctx, "m", "p0", "w2"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Acquire(ctx, "m", "p0", "w1", 10*time.Second); err != nil {
		t.Fatalf("after release: %v", err)
	}
}

func TestCorruptFileIsReportedNotReset(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	garbage := []byte(strings.Repeat("this is not a bbolt file ", 400))
	if err := os.WriteFile(path, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(dir)
	if err == nil {
		t.Fatal("opened a corrupt store")
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name %s", err, path)
	}
	after, _ := os.ReadFile(path)
	if string(after) != string(garbage) {
		t.Error("the corrupt file was modified")
	}
}

func TestStoreInUse(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// bbolt's flock is per open file description, so a second Open in this
	// process sees the lock as another process would.
	_, err = Open(dir)
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("second open: %v", err)
	}
}
