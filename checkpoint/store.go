package checkpoint

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync/atomic"
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

// ErrDamaged is what every *DamageError wraps.
var ErrDamaged = errors.New("checkpoint: store is damaged")

// DamageError reports a store file that is not a sound esmd store: empty,
// truncated, with damaged pages, or not a bbolt file at all. Open returns
// it instead of starting an empty store over the file, and every method
// returns it once bbolt has failed on the file while esmd runs.
type DamageError struct {
	Path   string
	Reason string
}

func (e *DamageError) Error() string {
	return fmt.Sprintf("checkpoint: the store %s is damaged: %s; "+
		"restore a copy made with 'esmd store backup' to that path, "+
		"or move the file away to start with an empty store (its mappings and checkpoints are then lost)", e.Path, e.Reason)
}

func (e *DamageError) Unwrap() error { return ErrDamaged }

// Store is the embedded bbolt store. It is safe for concurrent use.
//
// bbolt trusts its file: on a damaged page it panics with an assertion or
// faults on an address past the file. Open verifies the whole file before
// bbolt reads it (Verify), and every transaction runs under a guard that
// turns a panic or fault into a *DamageError naming the file; after one,
// the store refuses every further call with that error.
type Store struct {
	db     *bolt.DB
	path   string
	ver    Verification
	framed bool // every value carries a checksum (frame.go)
	broken atomic.Pointer[DamageError]
}

// FileName is the store's file name inside the data directory.
const FileName = "esmd.db"

// lockTimeout is how long Open waits for another process's lock.
const lockTimeout = 2 * time.Second

// Open opens the store in dir, creating dir and a new store when the file
// does not exist. An existing file is verified first (Verify): an empty,
// truncated or damaged file is a *DamageError naming it, never replaced
// by a new store.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("checkpoint: create data directory %s: %w", dir, err)
	}
	path := filepath.Join(dir, FileName)
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		if err := create(path); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, fmt.Errorf("checkpoint: open store: %w", err)
	}
	s, err := open(path, false)
	if err != nil {
		return nil, err
	}
	// Read and check everything before the first write, so that a damaged
	// file is left as it was found.
	settled, err := s.load()
	if err == nil && !settled {
		err = s.update("initialise store", func(tx *bolt.Tx) error {
			if err := initBuckets(tx); err != nil {
				return err
			}
			if err := tx.DeleteBucket(bucketLeases); err != nil && !errors.Is(err, bolterrors.ErrBucketNotFound) {
				return err
			}
			if !s.framed {
				return convert(tx)
			}
			return nil
		})
		s.framed = err == nil
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// load reads the store's format and checks every value (of an older
// store: their layout; their checksums once framed). settled is false when
// Open has to write first: buckets to create, a leases bucket to drop,
// values to frame.
func (s *Store) load() (settled bool, err error) {
	var hasMappings, hasPositions bool
	err = s.view("read format", func(tx *bolt.Tx) error {
		framed, err := isFramed(tx)
		if err != nil {
			return &DamageError{Path: s.path, Reason: err.Error()}
		}
		s.framed = framed
		hasMappings, hasPositions = tx.Bucket(bucketMappings) != nil, tx.Bucket(bucketPositions) != nil
		settled = framed && hasMappings && hasPositions && tx.Bucket(bucketLeases) == nil
		return nil
	})
	if err == nil && hasMappings {
		_, err = s.LoadMappings(context.Background())
	}
	if err == nil && hasPositions {
		err = s.AllPositions(context.Background(), func(string, string, string) error { return nil })
	}
	return settled, err
}

// OpenReadOnly opens an existing store file to read it (Check, Backup,
// LoadMappings, ...), verified as Open verifies it. It shares the file
// with other readers but not with a process that writes it (ErrInUse).
func OpenReadOnly(path string) (*Store, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("checkpoint: open store: %w", err)
	}
	s, err := open(path, true)
	if err != nil {
		return nil, err
	}
	if _, err := s.load(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func initBuckets(tx *bolt.Tx) error {
	for _, b := range [][]byte{bucketMappings, bucketPositions} {
		if _, err := tx.CreateBucketIfNotExists(b); errors.Is(err, bolterrors.ErrIncompatibleValue) {
			return fmt.Errorf("%w: %q is a value, not a bucket", errNotEsmd, b)
		} else if err != nil {
			return fmt.Errorf("bucket %s: %w", b, err)
		}
	}
	return nil
}

// create makes a new store at path: written to a temporary file, then
// linked into place, so that path is never an empty or half-written file
// (an empty file is refused as damaged) and a store another process
// created meanwhile is kept.
func create(path string) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+FileName+".new-*")
	if err != nil {
		return fmt.Errorf("checkpoint: create store %s: %w", path, err)
	}
	tmp := f.Name()
	f.Close()
	defer os.Remove(tmp)
	db, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: lockTimeout})
	if err != nil {
		return fmt.Errorf("checkpoint: create store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if err := initBuckets(tx); err != nil {
			return err
		}
		return convert(tx)
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("checkpoint: create store %s: %w", path, err)
	}
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("checkpoint: create store %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("checkpoint: sync %s: %w", dir, err)
	}
	return nil
}

// open opens the existing store file path with bbolt. bbolt opens the file
// through the OpenFile hook, which locks and verifies it before bbolt reads
// a byte; bbolt itself would initialise an empty file as a new store.
func open(path string, readOnly bool) (*Store, error) {
	s := &Store{path: path}
	hooked := false
	opts := &bolt.Options{
		Timeout:  lockTimeout,
		ReadOnly: readOnly,
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			if hooked { // later opens (tx.WriteTo with a WriteFlag): the plain file
				return os.OpenFile(name, flag, perm)
			}
			hooked = true
			f, err := os.OpenFile(name, flag&^os.O_CREATE, perm)
			if err != nil {
				return nil, err
			}
			if err := lockFile(f, !readOnly, lockTimeout); err != nil {
				f.Close()
				return nil, err
			}
			fi, err := f.Stat()
			if err == nil {
				var ver Verification
				ver, err = verifyOpen(path, f, fi.Size())
				s.ver = ver
			}
			if err != nil {
				f.Close()
				return nil, err
			}
			return f, nil
		},
	}
	err := s.guard("open", func() error {
		db, err := bolt.Open(path, 0o600, opts)
		s.db = db
		return err
	})
	var damaged *DamageError
	switch {
	case err == nil:
		return s, nil
	case errors.Is(err, bolterrors.ErrTimeout):
		return nil, fmt.Errorf("%w: %s", ErrInUse, path)
	case errors.As(err, &damaged):
		return nil, err
	case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrChecksum), errors.Is(err, bolterrors.ErrVersionMismatch):
		return nil, &DamageError{Path: path, Reason: err.Error()}
	default:
		return nil, fmt.Errorf("checkpoint: open store %s: %w", path, err)
	}
}

// guard runs fn, turning a bbolt panic or a memory fault (a page past the
// end of a truncated file) into a *DamageError, after which the store
// refuses every call.
func (s *Store) guard(what string, fn func() error) error {
	if d := s.broken.Load(); d != nil {
		return d
	}
	return s.protect(what, fn)
}

// protect is guard without the refusal of a failed store.
func (s *Store) protect(what string, fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			d := &DamageError{Path: s.path, Reason: fmt.Sprintf("%s: %v", what, r)}
			s.broken.CompareAndSwap(nil, d)
			err = d
		}
	}()
	// A fault in the memory map panics (and is recovered above) instead
	// of crashing the process.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	return fn()
}

// Path is the store's file.
func (s *Store) Path() string { return s.path }

// Verification is what Open found when it verified the file, including
// findings that did not stop it from opening (Verification.Notes).
func (s *Store) Verification() Verification { return s.ver }

// Close closes the store.
func (s *Store) Close() error {
	if s.db == nil {
		return nil
	}
	return s.protect("close", s.db.Close)
}

// SaveMapping stores a mapping definition under its UUID.
func (s *Store) SaveMapping(_ context.Context, uuid string, data []byte) error {
	return s.update("save mapping "+uuid, func(tx *bolt.Tx) error {
		b, err := bucket(tx, bucketMappings)
		if err != nil {
			return err
		}
		return b.Put([]byte(uuid), frame([]byte(uuid), data))
	})
}

// DeleteMapping removes a mapping and every position it owns.
func (s *Store) DeleteMapping(_ context.Context, uuid string) error {
	return s.update("delete mapping "+uuid, func(tx *bolt.Tx) error {
		ms, err := bucket(tx, bucketMappings)
		if err != nil {
			return err
		}
		ps, err := bucket(tx, bucketPositions)
		if err != nil {
			return err
		}
		if err := ms.Delete([]byte(uuid)); err != nil {
			return err
		}
		if err := ps.DeleteBucket([]byte(uuid)); err != nil && !errors.Is(err, bolterrors.ErrBucketNotFound) {
			return err
		}
		return nil
	})
}

// LoadMappings returns every stored mapping definition keyed by UUID.
func (s *Store) LoadMappings(_ context.Context) (map[string][]byte, error) {
	out := map[string][]byte{}
	err := s.view("read mappings", func(tx *bolt.Tx) error {
		b, err := bucket(tx, bucketMappings)
		if err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			if v == nil {
				return fmt.Errorf("%w: mapping %q is a bucket, not a value", errNotEsmd, k)
			}
			data, err := s.unframe(k, v)
			if err != nil {
				return err
			}
			out[string(k)] = bytes.Clone(data)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Position returns the checkpoint of one lane of a mapping; ok is false when
// none was written.
func (s *Store) Position(_ context.Context, mapping, lane string) (pos string, ok bool, err error) {
	err = s.view("read position "+mapping+"/"+lane, func(tx *bolt.Tx) error {
		ps, err := bucket(tx, bucketPositions)
		if err != nil {
			return err
		}
		b := ps.Bucket([]byte(mapping))
		if b == nil {
			return nil
		}
		if v := b.Get([]byte(lane)); v != nil {
			p, err := s.unframe([]byte(lane), v)
			if err != nil {
				return err
			}
			pos, ok = string(p), true
		}
		return nil
	})
	if err != nil {
		return "", false, err
	}
	return pos, ok, nil
}

// SetPosition durably records the checkpoint of one lane. Callers write a
// position only once every record at or before it is done.
func (s *Store) SetPosition(ctx context.Context, mapping, lane, pos string) error {
	return s.SetPositions(ctx, mapping, map[string]string{lane: pos})
}

// SetPositions stores the checkpoints of several lanes of a mapping in one
// write (one fsync): the coalescing checkpoint writer of stream pollers
// uses it (pollers/stream.PositionBatcher).
func (s *Store) SetPositions(_ context.Context, mapping string, positions map[string]string) error {
	if len(positions) == 0 {
		return nil
	}
	return s.update("write positions of "+mapping, func(tx *bolt.Tx) error {
		ps, err := bucket(tx, bucketPositions)
		if err != nil {
			return err
		}
		b, err := ps.CreateBucketIfNotExists([]byte(mapping))
		if err != nil {
			return err
		}
		for lane, pos := range positions {
			if err := b.Put([]byte(lane), frame([]byte(lane), []byte(pos))); err != nil {
				return err
			}
		}
		return nil
	})
}

// Positions returns every lane's checkpoint of a mapping.
func (s *Store) Positions(_ context.Context, mapping string) (map[string]string, error) {
	out := map[string]string{}
	err := s.view("read positions of "+mapping, func(tx *bolt.Tx) error {
		ps, err := bucket(tx, bucketPositions)
		if err != nil {
			return err
		}
		b := ps.Bucket([]byte(mapping))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			p, err := s.unframe(k, v)
			if err != nil {
				return err
			}
			out[string(k)] = string(p)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// AllPositions calls fn with every checkpoint in the store, by mapping
// and lane, in key order.
func (s *Store) AllPositions(_ context.Context, fn func(mapping, lane, pos string) error) error {
	// Read first, call fn after the transaction: fn's own failures are
	// not the store's.
	var all [][3]string
	err := s.view("read positions", func(tx *bolt.Tx) error {
		ps, err := bucket(tx, bucketPositions)
		if err != nil {
			return err
		}
		return ps.ForEach(func(m, v []byte) error {
			b := ps.Bucket(m)
			if b == nil {
				return fmt.Errorf("%w: positions of %q: a value, not a bucket", errNotEsmd, m)
			}
			return b.ForEach(func(lane, pos []byte) error {
				if pos == nil {
					return fmt.Errorf("%w: position %q/%q: a bucket, not a value", errNotEsmd, m, lane)
				}
				p, err := s.unframe(lane, pos)
				if err != nil {
					return err
				}
				all = append(all, [3]string{string(m), string(lane), string(p)})
				return nil
			})
		})
	})
	if err != nil {
		return err
	}
	for _, e := range all {
		if err := fn(e[0], e[1], e[2]); err != nil {
			return err
		}
	}
	return nil
}

// Check runs bbolt's own consistency check (Tx.Check) over the store and
// returns every inconsistency it reports, joined. Open has verified the
// file already; Check is the second opinion 'esmd store check' gives. Its
// cost grows with the file: see BenchmarkOpenCost.
func (s *Store) Check(_ context.Context) error {
	return s.view("check", func(tx *bolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			if len(errs) < 20 {
				errs = append(errs, err)
			}
		}
		if len(errs) > 0 {
			return &DamageError{Path: s.path, Reason: "bbolt consistency check: " + errors.Join(errs...).Error()}
		}
		return nil
	})
}

// WriteFile writes a store file to dst without ever leaving a partial file
// there: write fills a temporary file beside dst, which is synced, opened
// and verified as OpenReadOnly does (every page and checksum), and only
// then renamed over dst; the directory is synced last.
func WriteFile(dst string, write func(io.Writer) error) (Verification, error) {
	dir := filepath.Dir(dst)
	f, err := os.CreateTemp(dir, "."+filepath.Base(dst)+".tmp-*")
	if err != nil {
		return Verification{}, fmt.Errorf("checkpoint: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	err = write(f)
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Verification{}, fmt.Errorf("checkpoint: write %s: %w", dst, err)
	}
	s, err := OpenReadOnly(tmp)
	if err != nil {
		return Verification{}, fmt.Errorf("checkpoint: the copy is not a sound store, %s was not written: %w", dst, err)
	}
	ver := s.Verification()
	if err := s.Close(); err != nil {
		return ver, fmt.Errorf("checkpoint: %w", err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return ver, fmt.Errorf("checkpoint: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return ver, fmt.Errorf("checkpoint: %w", err)
	}
	return ver, syncDir(dir)
}

// Backup writes a consistent copy of the store to w, from one read
// transaction, while the store stays in use. size, when not nil, is called
// with the copy's length before the first byte is written.
func (s *Store) Backup(w io.Writer, size func(int64)) (int64, error) {
	var n int64
	err := s.view("back up", func(tx *bolt.Tx) error {
		if size != nil {
			size(tx.Size())
		}
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// unframe is the payload of a stored value; a value that fails its
// checksum is damage.
func (s *Store) unframe(key, v []byte) ([]byte, error) {
	p, err := unframe(key, v, s.framed)
	if err != nil {
		return nil, &DamageError{Path: s.path, Reason: err.Error()}
	}
	return p, nil
}

// bucket is a top-level bucket every esmd store has.
func bucket(tx *bolt.Tx, name []byte) (*bolt.Bucket, error) {
	b := tx.Bucket(name)
	if b == nil {
		return nil, fmt.Errorf("%w: no %q bucket", errNotEsmd, name)
	}
	return b, nil
}

// errNotEsmd marks a sound bbolt file whose layout is not an esmd store's.
var errNotEsmd = errors.New("not an esmd store")

func (s *Store) view(what string, fn func(*bolt.Tx) error) error {
	err := s.guard(what, func() error { return s.db.View(fn) })
	return s.wrap(what, err)
}

func (s *Store) update(what string, fn func(*bolt.Tx) error) error {
	err := s.guard(what, func() error { return s.db.Update(fn) })
	return s.wrap(what, err)
}

func (s *Store) wrap(what string, err error) error {
	var d *DamageError
	if err == nil || errors.As(err, &d) {
		return err
	}
	if errors.Is(err, errNotEsmd) {
		return &DamageError{Path: s.path, Reason: err.Error()}
	}
	return fmt.Errorf("checkpoint: %s in %s: %w", what, s.path, err)
}
