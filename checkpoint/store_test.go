package checkpoint

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
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
	// Deleting a mapping removes its positions.
	if err := s.DeleteMapping(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Position(ctx, "a", "shardId-000"); ok {
		t.Error("position survived mapping deletion")
	}
	if ms, _ := s.LoadMappings(ctx); len(ms) != 0 {
		t.Errorf("mappings after deletion %v", ms)
	}
}

// TestOpenStoreWithLeases: a store written by an earlier version, with a
// "leases" bucket, opens with its mappings and positions, and the unused
// leases bucket is dropped.
func TestOpenStoreWithLeases(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		put := func(path ...string) error {
			b, err := tx.CreateBucketIfNotExists([]byte(path[0]))
			if err != nil {
				return err
			}
			for _, p := range path[1 : len(path)-2] {
				if b, err = b.CreateBucketIfNotExists([]byte(p)); err != nil {
					return err
				}
			}
			return b.Put([]byte(path[len(path)-2]), []byte(path[len(path)-1]))
		}
		return errors.Join(
			put("mappings", "a", `{"x":1}`),
			put("positions", "a", "shardId-000", "42"),
			put("leases", "a", "shardId-000", `{"owner":"w1","expires":"2030-01-01T00:00:00Z","counter":1}`),
		)
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()

	// Read-only, the older store reads as it is, unchanged.
	ro, err := OpenReadOnly(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if ms, err := ro.LoadMappings(ctx); err != nil || string(ms["a"]) != `{"x":1}` {
		t.Fatalf("read-only mappings %v %v", ms, err)
	}
	ro.Close()

	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ms, err := s.LoadMappings(ctx); err != nil || string(ms["a"]) != `{"x":1}` {
		t.Fatalf("mappings %v %v", ms, err)
	}
	if pos, ok, err := s.Position(ctx, "a", "shardId-000"); err != nil || !ok || pos != "42" {
		t.Fatalf("position %q %v %v", pos, ok, err)
	}
	// Open framed the older values with their checksum.
	err = s.db.View(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMappings).Get([]byte("a"))
		p := tx.Bucket(bucketPositions).Bucket([]byte("a")).Get([]byte("shardId-000"))
		if !bytes.Equal(m, frame([]byte("a"), []byte(`{"x":1}`))) || !bytes.Equal(p, frame([]byte("shardId-000"), []byte("42"))) {
			return fmt.Errorf("values not framed: %q %q", m, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMapping(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketLeases) != nil {
			return errors.New("leases bucket still there")
		}
		if v := tx.Bucket(bucketPositions).Bucket([]byte("a")); v != nil {
			return errors.New("positions of the deleted mapping still there")
		}
		if framed, err := isFramed(tx); !framed || err != nil {
			return fmt.Errorf("store not marked framed: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	s.Close()
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

// TestNotAnEsmdStore: sound bbolt files laid out otherwise than esmd's
// are refused as damaged, and left as they were.
func TestNotAnEsmdStore(t *testing.T) {
	cases := map[string]func(tx *bolt.Tx) error{
		"mappings is a bucket of buckets": func(tx *bolt.Tx) error {
			b, err := tx.CreateBucket(bucketMappings)
			if err != nil {
				return err
			}
			_, err = b.CreateBucket([]byte("a"))
			return err
		},
		"a position is a value of positions": func(tx *bolt.Tx) error {
			if _, err := tx.CreateBucket(bucketMappings); err != nil {
				return err
			}
			b, err := tx.CreateBucket(bucketPositions)
			if err != nil {
				return err
			}
			return b.Put([]byte("a"), []byte("1"))
		},
		"a framed store with a value not framed": func(tx *bolt.Tx) error {
			b, err := tx.CreateBucket(bucketMappings)
			if err != nil {
				return err
			}
			if _, err := tx.CreateBucket(bucketPositions); err != nil {
				return err
			}
			if err := b.Put([]byte("a"), []byte(`{"x":1}`)); err != nil {
				return err
			}
			f, err := tx.CreateBucket(bucketFormat)
			if err != nil {
				return err
			}
			return f.Put(keyFramed, frame(keyFramed, []byte("1")))
		},
	}
	for name, build := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, FileName)
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(build); err != nil {
				t.Fatal(err)
			}
			db.Close()
			before, _ := os.ReadFile(path)
			_, err = Open(dir)
			if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), path) {
				t.Fatalf("open: %v", err)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
				t.Error("the file was changed")
			}
		})
	}
}
