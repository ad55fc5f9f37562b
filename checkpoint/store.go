package checkpoint

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

var (
	bucketMappings  = []byte("mappings")
	bucketPositions = []byte("positions")
	// bucketLeases held per-lane leases in stores written by earlier
	// versions. Nothing used them; Open drops the bucket.
	bucketLeases = []byte("leases")
)

// ErrInUse is returned by Open when another process has the store open.
var ErrInUse = errors.New("checkpoint: store is in use by another process")

// Store is the embedded bbolt store. It is safe for concurrent use.
type Store struct {
	db   *bolt.DB
	path string
}

// FileName is the store's file name inside the data directory.
const FileName = "esmd.db"

// Open opens (creating if needed) the store in dir. A file that is not a
// valid store is reported with its path; it is never silently replaced.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("checkpoint: create data directory %s: %w", dir, err)
	}
	path := filepath.Join(dir, FileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("%w: %s", ErrInUse, path)
		}
		return nil, fmt.Errorf("checkpoint: open store %s: %w (the file is not a valid esmd store; move it away to start with an empty one)", path, err)
	}
	s := &Store{db: db, path: path}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMappings, bucketPositions} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if err := tx.DeleteBucket(bucketLeases); err != nil && !errors.Is(err, bolterrors.ErrBucketNotFound) {
			return err
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("checkpoint: initialise store %s: %w", path, err)
	}
	return s, nil
}

// Path is the store's file.
func (s *Store) Path() string { return s.path }

// Close closes the store.
func (s *Store) Close() error { return s.db.Close() }

// SaveMapping stores a mapping definition under its UUID.
func (s *Store) SaveMapping(_ context.Context, uuid string, data []byte) error {
	return s.update("save mapping "+uuid, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMappings).Put([]byte(uuid), data)
	})
}

// DeleteMapping removes a mapping and every position it owns.
func (s *Store) DeleteMapping(_ context.Context, uuid string) error {
	return s.update("delete mapping "+uuid, func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketMappings).Delete([]byte(uuid)); err != nil {
			return err
		}
		if err := tx.Bucket(bucketPositions).DeleteBucket([]byte(uuid)); err != nil && !errors.Is(err, bolterrors.ErrBucketNotFound) {
			return err
		}
		return nil
	})
}

// LoadMappings returns every stored mapping definition keyed by UUID.
func (s *Store) LoadMappings(_ context.Context) (map[string][]byte, error) {
	out := map[string][]byte{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMappings).ForEach(func(k, v []byte) error {
			out[string(k)] = bytes.Clone(v)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("checkpoint: read mappings from %s: %w", s.path, err)
	}
	return out, nil
}

// Position returns the checkpoint of one lane of a mapping; ok is false when
// none was written.
func (s *Store) Position(_ context.Context, mapping, lane string) (pos string, ok bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPositions).Bucket([]byte(mapping))
		if b == nil {
			return nil
		}
		if v := b.Get([]byte(lane)); v != nil {
			pos, ok = string(v), true
		}
		return nil
	})
	if err != nil {
		return "", false, fmt.Errorf("checkpoint: read position %s/%s from %s: %w", mapping, lane, s.path, err)
	}
	return pos, ok, nil
}

// SetPosition durably records the checkpoint of one lane. Callers write a
// position only once every record at or before it is done.
func (s *Store) SetPosition(_ context.Context, mapping, lane, pos string) error {
	return s.update("write position "+mapping+"/"+lane, func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bucketPositions).CreateBucketIfNotExists([]byte(mapping))
		if err != nil {
			return err
		}
		return b.Put([]byte(lane), []byte(pos))
	})
}

// SetPositions stores the checkpoints of several lanes of a mapping in one
// write (one fsync): the coalescing checkpoint writer of stream pollers
// uses it (pollers/stream.PositionBatcher).
func (s *Store) SetPositions(_ context.Context, mapping string, positions map[string]string) error {
	if len(positions) == 0 {
		return nil
	}
	return s.update("write positions of "+mapping, func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bucketPositions).CreateBucketIfNotExists([]byte(mapping))
		if err != nil {
			return err
		}
		for lane, pos := range positions {
			if err := b.Put([]byte(lane), []byte(pos)); err != nil {
				return err
			}
		}
		return nil
	})
}

// Positions returns every lane's checkpoint of a mapping.
func (s *Store) Positions(_ context.Context, mapping string) (map[string]string, error) {
	out := map[string]string{}
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPositions).Bucket([]byte(mapping))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			out[string(k)] = string(v)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("checkpoint: read positions of %s from %s: %w", mapping, s.path, err)
	}
	return out, nil
}

func (s *Store) update(what string, fn func(*bolt.Tx) error) error {
	if err := s.db.Update(fn); err != nil {
		return fmt.Errorf("checkpoint: %s in %s: %w", what, s.path, err)
	}
	return nil
}
