package workerid

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	id, err := Load(dir)
	if err != nil || !valid.MatchString(id) {
		t.Fatalf("%q %v", id, err)
	}
	again, err := Load(dir)
	if err != nil || again != id {
		t.Fatalf("second load %q %v, want %q", again, err, id)
	}
	other, err := Load(t.TempDir())
	if err != nil || other == id {
		t.Fatalf("another directory's id %q %v", other, err)
	}
	fi, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("file mode %v %v", fi.Mode(), err)
	}
}

func TestLoadConcurrently(t *testing.T) {
	dir := t.TempDir()
	ids := make([]string, 8)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, err := Load(dir)
			if err != nil {
				t.Error(err)
			}
			ids[i] = id
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("ids %v", ids)
		}
	}
}

func TestLoadRefusesDamage(t *testing.T) {
	for _, content := range []string{"", "has space", "a/b", string(make([]byte, 100))} {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, FileName), []byte(content), 0o600)
		if id, err := Load(dir); err == nil {
			t.Errorf("%q: loaded %q", content, id)
		}
	}
}
