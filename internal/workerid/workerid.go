// Package workerid gives an esmd process a stable identity: a random id
// made at its first start and kept in its data directory, so that it
// survives restarts and differs between workers (each has its own
// --data-dir, even when they share a PostgreSQL store). Sources use it where
// a broker should recognize a worker that comes back, such as Kafka's
// static group membership (group.instance.id).
package workerid

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/google/uuid"
)

// FileName is the file in the data directory that holds the id.
const FileName = "worker-id"

// valid is what Load accepts from the file: the characters a Kafka
// group.instance.id allows, and a bounded length.
var valid = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// Load returns the worker id kept in dir, making it (and dir) the first
// time.
func Load(dir string) (string, error) {
	path := filepath.Join(dir, FileName)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		id := strings.TrimSpace(string(b))
		if !valid.MatchString(id) {
			return "", fmt.Errorf("worker id %s: want 1 to 64 letters, digits, '.', '_' or '-' (delete the file to make a new one)", path)
		}
		return id, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("worker id: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("worker id: %w", err)
	}
	id := uuid.NewString()
	// Written to a temporary file and renamed, so that a crash leaves either
	// no file or a whole one.
	tmp, err := os.CreateTemp(dir, FileName+".*")
	if err != nil {
		return "", fmt.Errorf("worker id: %w", err)
	}
	_, werr := tmp.WriteString(id + "\n")
	if err := errors.Join(werr, tmp.Sync(), tmp.Close()); err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("worker id: %w", err)
	}
	// A link fails if another process made the file meanwhile: then its id
	// is the one.
	if err := os.Link(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		if errors.Is(err, fs.ErrExist) {
			return Load(dir)
		}
		return "", fmt.Errorf("worker id: %w", err)
	}
	os.Remove(tmp.Name())
	return id, nil
}
