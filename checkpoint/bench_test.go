package checkpoint

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// bigStore writes a store of mappings*lanes positions (and mappings of
// about 1 KB) in a new directory.
func bigStore(b *testing.B, mappings, lanes int) string {
	b.Helper()
	dir := b.TempDir()
	s, err := Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	pad := make([]byte, 1000)
	for i := range pad {
		pad[i] = 'x'
	}
	for m := range mappings {
		id := fmt.Sprintf("%08d-0000-4000-8000-000000000000", m)
		if err := s.SaveMapping(ctx, id, fmt.Appendf(nil, `{"UUID":%q,"Pad":%q}`, id, pad)); err != nil {
			b.Fatal(err)
		}
		ps := make(map[string]string, lanes)
		for l := range lanes {
			ps[fmt.Sprintf("shardId-%012d", l)] = fmt.Sprintf("49590338271490256608559692538361571095921575989%09d", l)
		}
		if err := s.SetPositions(ctx, id, ps); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	return dir
}

// BenchmarkOpenCost measures what opening a store costs on a store of
// 200 mappings with 500 lanes each (100,000 positions): Verify (esmd's
// walk of the file), Open (Verify, then bbolt's open and every value's
// checksum), and bbolt's own Tx.Check, which Open does not run.
//
//	go test ./checkpoint -run XXX -bench OpenCost -benchtime 20x
func BenchmarkOpenCost(b *testing.B) {
	dir := bigStore(b, 200, 500)
	path := filepath.Join(dir, FileName)
	fi, _ := os.Stat(path)
	b.Logf("store: %d bytes", fi.Size())
	b.Run("Verify", func(b *testing.B) {
		for b.Loop() {
			if _, err := Verify(path); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Open", func(b *testing.B) {
		for b.Loop() {
			s, err := Open(dir)
			if err != nil {
				b.Fatal(err)
			}
			s.Close()
		}
	})
	b.Run("TxCheck", func(b *testing.B) {
		s, err := OpenReadOnly(path)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		for b.Loop() {
			if err := s.Check(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
	})
}
