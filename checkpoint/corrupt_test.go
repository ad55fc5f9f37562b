package checkpoint

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fixture is a store written through the package API and closed: mappings
// (one larger than a page, so the file has overflow pages), and positions
// of many lanes (so the positions buckets span branch and leaf pages).
type fixture struct {
	file      []byte
	mappings  map[string][]byte
	positions map[string]map[string]string
	pageSize  int
	// pages maps each page in use to what owns it ("meta", "freelist",
	// a bucket path); free lists the free pages.
	pages map[uint64]string
	free  []uint64
}

var (
	fixtureOnce sync.Once
	fixtureData fixture
	fixtureErr  error
)

func storeFixture(t testing.TB) fixture {
	t.Helper()
	fixtureOnce.Do(func() { fixtureData, fixtureErr = buildFixture(t.TempDir()) })
	if fixtureErr != nil {
		t.Fatal(fixtureErr)
	}
	return fixtureData
}

func buildFixture(dir string) (fixture, error) {
	ctx := context.Background()
	f := fixture{mappings: map[string][]byte{}, positions: map[string]map[string]string{}}
	s, err := Open(dir)
	if err != nil {
		return f, err
	}
	for i := range 12 {
		id := fmt.Sprintf("%08d-0000-4000-8000-000000000000", i)
		m := fmt.Sprintf(`{"UUID":%q,"FunctionArn":"arn:aws:lambda:us-east-1:000000000000:function:f%d","BatchSize":%d}`, id, i, i+1)
		if i == 3 {
			m = fmt.Sprintf(`{"UUID":%q,"Pad":%q}`, id, strings.Repeat("x", 9000))
		}
		f.mappings[id] = []byte(m)
		if err := s.SaveMapping(ctx, id, []byte(m)); err != nil {
			return f, err
		}
		if i%3 == 0 {
			continue
		}
		lanes := map[string]string{}
		for l := range 40 * (i%4 + 1) {
			lanes[fmt.Sprintf("shardId-%012d", l)] = fmt.Sprintf("4959033827149025660855969253836157109592157598913658%04d", l*7+i)
		}
		f.positions[id] = lanes
		if err := s.SetPositions(ctx, id, lanes); err != nil {
			return f, err
		}
	}
	// A mapping and its positions deleted: the file has free pages.
	del := "00000005-0000-4000-8000-000000000000"
	if err := s.DeleteMapping(ctx, del); err != nil {
		return f, err
	}
	delete(f.mappings, del)
	delete(f.positions, del)
	// A last write that leaves the data as it was, so that both meta
	// pages describe the same mappings and positions: a store read from
	// either is intact.
	const m1, lane = "00000001-0000-4000-8000-000000000000", "shardId-000000000000"
	if err := s.SetPosition(ctx, m1, lane, f.positions[m1][lane]); err != nil {
		return f, err
	}
	if err := s.Close(); err != nil {
		return f, err
	}
	f.file, err = os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		return f, err
	}
	// Where everything is, from the verifier's own walk.
	r := bytes.NewReader(f.file)
	m, _, err := chooseMeta(r, int64(len(f.file)))
	if err != nil {
		return f, err
	}
	v := &verifier{r: r, size: int64(len(f.file)), pageSize: m.pageSize, hwm: m.hwm, used: map[uint64]string{0: "meta", 1: "meta"}, free: map[uint64]bool{}}
	if err := v.freelist(m.freelist); err != nil {
		return f, err
	}
	if err := v.tree(m.root, nil, nil, 1, "root bucket"); err != nil {
		return f, err
	}
	f.pageSize, f.pages = int(m.pageSize), v.used
	for p := range v.free {
		f.free = append(f.free, p)
	}
	slices.Sort(f.free)
	return f, nil
}

// pagesOf returns the pages whose owner satisfies ok, in order.
func (f fixture) pagesOf(ok func(owner string) bool) []uint64 {
	var out []uint64
	for p, o := range f.pages {
		if ok(o) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

type outcome string

const (
	damaged outcome = "refused: damaged"
	intact  outcome = "opened: data intact"
	either  outcome = "either"
)

// damage is one way of spoiling the fixture's file.
type damage struct {
	name string
	want outcome
	fn   func(f fixture, b []byte) []byte
}

func truncateAt(off func(f fixture) int) func(fixture, []byte) []byte {
	return func(f fixture, b []byte) []byte { return b[:off(f)] }
}

// scribble overwrites n random bytes (seeded) at random offsets inside the
// given pages, keeping the first skip bytes of each page.
func scribble(seed uint64, n, skip int, pages func(f fixture) []uint64) func(fixture, []byte) []byte {
	return func(f fixture, b []byte) []byte {
		rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
		ps := pages(f)
		if len(ps) == 0 {
			panic("no pages to damage")
		}
		for range n {
			p := ps[rng.IntN(len(ps))]
			off := int(p)*f.pageSize + skip + rng.IntN(f.pageSize-skip)
			b[off] = byte(rng.Uint32())
		}
		return b
	}
}

// metaBytes overwrites 4 random bytes (seeded) of the meta (not the rest
// of the page) in each of the given meta pages.
func metaBytes(seed uint64, pages ...int) func(fixture, []byte) []byte {
	return func(f fixture, b []byte) []byte {
		rng := rand.New(rand.NewPCG(seed, 2))
		for _, p := range pages {
			for range 4 {
				off := p*f.pageSize + metaOffset + rng.IntN(metaSize)
				b[off] ^= byte(1 + rng.IntN(255))
			}
		}
		return b
	}
}

// randomPage overwrites the whole of the given pages with random bytes.
func randomPage(seed uint64, pages func(f fixture) []uint64) func(fixture, []byte) []byte {
	return func(f fixture, b []byte) []byte {
		rng := rand.New(rand.NewPCG(seed, 1))
		for _, p := range pages(f) {
			for i := range f.pageSize {
				b[int(p)*f.pageSize+i] = byte(rng.Uint32())
			}
		}
		return b
	}
}

func owner(prefix string) func(f fixture) []uint64 {
	return func(f fixture) []uint64 {
		return f.pagesOf(func(o string) bool { return strings.HasPrefix(o, prefix) })
	}
}

func pageIDs(ids ...uint64) func(fixture) []uint64 { return func(fixture) []uint64 { return ids } }

func firstOf(pages func(fixture) []uint64) func(fixture) []uint64 {
	return func(f fixture) []uint64 { return pages(f)[:1] }
}

var dataPages = func(f fixture) []uint64 {
	return f.pagesOf(func(o string) bool { return o != "meta" && o != "freelist" })
}

// damages is the corruption matrix.
var damages = []damage{
	{"0-byte file", damaged, truncateAt(func(fixture) int { return 0 })},
	{"garbage file", damaged, func(f fixture, b []byte) []byte {
		return []byte(strings.Repeat("this is not a bbolt file ", len(b)/25))
	}},
	{"random bytes file", damaged, randomPage(1, func(f fixture) []uint64 {
		var all []uint64
		for p := range len(f.file) / f.pageSize {
			all = append(all, uint64(p))
		}
		return all
	})},
	{"truncated inside meta 0", damaged, truncateAt(func(fixture) int { return 100 })},
	{"truncated inside meta 1", damaged, truncateAt(func(f fixture) int { return f.pageSize + 100 })},
	{"truncated after the meta pages", damaged, truncateAt(func(f fixture) int { return 2 * f.pageSize })},
	{"truncated inside the first data page", damaged, truncateAt(func(f fixture) int { return 2*f.pageSize + 1000 })},
	{"truncated at a page boundary mid-file", damaged, truncateAt(func(f fixture) int { return len(f.file) / f.pageSize / 2 * f.pageSize })},
	{"truncated inside the last page in use", damaged, truncateAt(func(f fixture) int {
		return (int(slices.Max(dataPages(f)))+1)*f.pageSize - 10
	})},
	{"truncated after the last page in use", either, truncateAt(func(f fixture) int {
		var last uint64
		for p := range f.pages {
			last = max(last, p)
		}
		if len(f.free) > 0 {
			last = max(last, slices.Max(f.free))
		}
		return int(last+1) * f.pageSize
	})},
	{"truncated by one byte", either, truncateAt(func(f fixture) int { return len(f.file) - 1 })},
	{"random bytes in meta 0", intact, metaBytes(1, 0)},
	{"random bytes in meta 1", intact, metaBytes(2, 1)},
	{"random bytes in meta pages past the meta", intact, scribble(3, 64, 80, pageIDs(0, 1))},
	{"meta 0 zeroed", intact, func(f fixture, b []byte) []byte { clear(b[:f.pageSize]); return b }},
	{"random bytes in both meta pages", damaged, metaBytes(4, 0, 1)},
	{"both meta pages zeroed", damaged, func(f fixture, b []byte) []byte { clear(b[:2*f.pageSize]); return b }},
	{"random bytes in the freelist page", either, scribble(4, 8, 0, owner("freelist"))},
	{"freelist page random", damaged, randomPage(5, owner("freelist"))},
	{"freelist page header zeroed", damaged, func(f fixture, b []byte) []byte {
		p := owner("freelist")(f)[0]
		clear(b[int(p)*f.pageSize : int(p)*f.pageSize+16])
		return b
	}},
	{"root page random", damaged, randomPage(6, owner("root bucket"))},
	{"random bytes in a mappings page", damaged, scribble(7, 6, 0, firstOf(owner(`root bucket/"mappings"`)))},
	{"mappings page header random", damaged, func(f fixture, b []byte) []byte {
		p := owner(`root bucket/"mappings"`)(f)[0]
		rng := rand.New(rand.NewPCG(7, 7))
		for i := range 16 {
			b[int(p)*f.pageSize+i] = byte(rng.Uint32())
		}
		return b
	}},
	{"positions branch page random", damaged, randomPage(8, firstOf(owner(`root bucket/"positions"/`)))},
	{"page id of a data page changed", damaged, func(f fixture, b []byte) []byte {
		p := dataPages(f)[2]
		b[int(p)*f.pageSize] ^= 0x40
		return b
	}},
	{"overflow count of a page raised", damaged, func(f fixture, b []byte) []byte {
		p := dataPages(f)[1]
		b[int(p)*f.pageSize+12] = 0xff
		return b
	}},
	{"element count of a page raised", damaged, func(f fixture, b []byte) []byte {
		p := dataPages(f)[1]
		b[int(p)*f.pageSize+10] = 0xff
		b[int(p)*f.pageSize+11] = 0x0f
		return b
	}},
	{"free pages random", intact, randomPage(9, func(f fixture) []uint64 { return f.free })},
}

func init() {
	// Random bytes in data pages: several seeds, several densities, with
	// and without the page headers.
	for seed := uint64(10); seed < 22; seed++ {
		n := []int{1, 4, 32}[seed%3]
		skip := []int{0, 16}[seed%2]
		damages = append(damages, damage{fmt.Sprintf("%d random bytes in data pages (seed %d, from byte %d)", n, seed, skip), either, scribble(seed, n, skip, dataPages)})
	}
	for seed := uint64(30); seed < 36; seed++ {
		damages = append(damages, damage{fmt.Sprintf("one random data page (seed %d)", seed), damaged, randomPage(seed, func(f fixture) []uint64 {
			ps := dataPages(f)
			return ps[int(seed)%len(ps) : int(seed)%len(ps)+1]
		})})
	}
}

// TestCorruptionMatrix damages copies of a real store in every way of the
// matrix and opens each: the result is a *DamageError naming the file (the
// file left as it was), or a store whose every mapping and position is the
// fixture's. Never a panic, never an empty or partial store.
func TestCorruptionMatrix(t *testing.T) {
	f := storeFixture(t)
	t.Logf("fixture: %d bytes, page size %d, %d pages in use, %d free", len(f.file), f.pageSize, len(f.pages), len(f.free))
	var matrix, golden strings.Builder
	for _, d := range damages {
		t.Run(d.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, FileName)
			bad := d.fn(f, bytes.Clone(f.file))
			if err := os.WriteFile(path, bad, 0o600); err != nil {
				t.Fatal(err)
			}
			got, detail := openAndReadAll(t, dir, f)
			fmt.Fprintf(&matrix, "%-62s %-20s %s\n", d.name, got, detail)
			fmt.Fprintf(&golden, "%s: %s\n", d.name, got)
			if d.want != either && got != d.want {
				t.Errorf("%s, want %s: %s", got, d.want, detail)
			}
			if got == damaged {
				if after, _ := os.ReadFile(path); !bytes.Equal(after, bad) {
					t.Error("the damaged file was changed")
				}
			}
		})
	}
	t.Logf("corruption matrix:\n%s", matrix.String())
	// The outcome of each case, pinned: the layout of the fixture's file
	// is deterministic for a bbolt version (go test -update after an
	// upgrade, and read the diff).
	goldenFile := filepath.Join("testdata", "corruption-matrix.txt")
	if f.pageSize != 4096 {
		t.Logf("page size %d: the outcomes pinned in %s are for 4096-byte pages", f.pageSize, goldenFile)
		return
	}
	if *update {
		if err := os.WriteFile(goldenFile, []byte(golden.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(goldenFile)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), golden.String()); diff != "" {
		t.Errorf("outcomes differ from %s (-want +got):\n%s", goldenFile, diff)
	}
}

var update = flag.Bool("update", false, "rewrite testdata/corruption-matrix.txt")

// openAndReadAll opens the store in dir and reads every mapping and
// position. It fails the test on a panic, a fault, an error that is not a
// *DamageError naming the file, or data that differs from f's.
func openAndReadAll(t *testing.T, dir string, f fixture) (got outcome, detail string) {
	t.Helper()
	path := filepath.Join(dir, FileName)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("panic: %v\n%s", r, debug.Stack())
		}
	}()
	checkErr := func(err error) (outcome, string) {
		var d *DamageError
		if !errors.As(err, &d) || !errors.Is(err, ErrDamaged) {
			t.Fatalf("error is not a DamageError: %v", err)
		}
		msg := err.Error()
		if !strings.Contains(msg, path) || !strings.Contains(msg, "esmd store backup") || !strings.Contains(msg, "move the file away") {
			t.Fatalf("error does not name the file and what to do: %v", err)
		}
		return damaged, d.Reason
	}
	ctx := context.Background()
	s, err := Open(dir)
	if err != nil {
		return checkErr(err)
	}
	defer s.Close()
	ms, err := s.LoadMappings(ctx)
	if err != nil {
		return checkErr(err)
	}
	ps := map[string]map[string]string{}
	err = s.AllPositions(ctx, func(m, lane, pos string) error {
		if ps[m] == nil {
			ps[m] = map[string]string{}
		}
		ps[m][lane] = pos
		return nil
	})
	if err != nil {
		return checkErr(err)
	}
	for m, lanes := range f.positions {
		for lane, want := range lanes {
			if pos, ok, err := s.Position(ctx, m, lane); err != nil {
				return checkErr(err)
			} else if !ok || pos != want {
				t.Fatalf("position %s/%s: %q %v, want %q", m, lane, pos, ok, want)
			}
		}
	}
	if diff := cmp.Diff(f.mappings, ms); diff != "" {
		t.Fatalf("opened with other mappings (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(f.positions, ps); diff != "" {
		t.Fatalf("opened with other positions (-want +got):\n%s", diff)
	}
	// The store that opened also takes writes.
	if err := s.SetPosition(ctx, "m", "l", "1"); err != nil {
		t.Fatalf("write after open: %v", err)
	}
	return intact, strings.Join(s.Verification().Notes, "; ")
}

// TestDamagedWhileOpen: damage done to the file under an open store (a
// truncation: the memory map then ends past the file; a data page
// overwritten in place) makes reads fail with a *DamageError instead of
// crashing the process, and the store refuses every call afterwards.
func TestDamagedWhileOpen(t *testing.T) {
	f := storeFixture(t)
	cases := []struct {
		name string
		fn   func(path string) error
	}{
		{"truncated", func(path string) error { return os.Truncate(path, int64(2*f.pageSize)) }},
		{"data pages overwritten", func(path string) error {
			fh, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer fh.Close()
			junk := bytes.Repeat([]byte{0xA5}, f.pageSize)
			for _, p := range dataPages(f) {
				if _, err := fh.WriteAt(junk, int64(p)*int64(f.pageSize)); err != nil {
					return err
				}
			}
			return nil
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, FileName)
			if err := os.WriteFile(path, f.file, 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := tc.fn(path); err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			_, err = s.LoadMappings(ctx)
			if err == nil {
				err = s.AllPositions(ctx, func(string, string, string) error { return nil })
			}
			if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), path) {
				t.Fatalf("read of a store damaged under it: %v", err)
			}
			if _, _, err := s.Position(ctx, "a", "b"); !errors.Is(err, ErrDamaged) {
				t.Errorf("after the damage was seen: %v", err)
			}
			if err := s.SaveMapping(ctx, "a", []byte("{}")); !errors.Is(err, ErrDamaged) {
				t.Errorf("write after the damage was seen: %v", err)
			}
		})
	}
}

// FuzzOpen opens arbitrary bytes as a store file and reads it all: never
// a panic or fault, only a *DamageError or a store that reads.
func FuzzOpen(f *testing.F) {
	fx := storeFixture(f)
	f.Add(fx.file[:4*fx.pageSize])
	f.Add(scribble(1, 4, 16, dataPages)(fx, bytes.Clone(fx.file)))
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte("garbage!"), 1024))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, FileName), data, 0o600); err != nil {
			t.Fatal(err)
		}
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		s, err := Open(dir)
		if err != nil {
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("open: %v", err)
			}
			return
		}
		defer s.Close()
		ctx := context.Background()
		readAllOrDamaged(t, s)
		_ = s.Check(ctx)
	})
}

// readAllOrDamaged reads every mapping and position of s: the reads
// succeed or fail with ErrDamaged.
func readAllOrDamaged(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	if _, err := s.LoadMappings(ctx); err != nil && !errors.Is(err, ErrDamaged) {
		t.Fatal(err)
	}
	if err := s.AllPositions(ctx, func(string, string, string) error { return nil }); err != nil && !errors.Is(err, ErrDamaged) {
		t.Fatal(err)
	}
}

// FuzzVerify runs the verifier alone (in memory, fast) on arbitrary
// bytes: it never panics, and a file it passes opens and reads in bbolt.
func FuzzVerify(f *testing.F) {
	fx := storeFixture(f)
	small, err := buildSmallStore(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(small)
	f.Add(fx.file[:4*fx.pageSize])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := verifyFile(bytes.NewReader(data), int64(len(data))); err != nil {
			return
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, FileName), data, 0o600); err != nil {
			t.Fatal(err)
		}
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		s, err := OpenReadOnly(filepath.Join(dir, FileName))
		if err != nil {
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("open: %v", err)
			}
			return
		}
		defer s.Close()
		ctx := context.Background()
		readAllOrDamaged(t, s)
		if err := s.Check(ctx); err != nil {
			t.Fatalf("bbolt's check fails on a file the verifier passed: %v", err)
		}
	})
}

// buildSmallStore returns a store of two mappings as a backup writes it:
// no pages past the high water mark.
func buildSmallStore(dir string) ([]byte, error) {
	ctx := context.Background()
	s, err := Open(dir)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	for _, id := range []string{"a", "b"} {
		if err := s.SaveMapping(ctx, id, []byte(`{"UUID":"`+id+`"}`)); err != nil {
			return nil, err
		}
		if err := s.SetPositions(ctx, id, map[string]string{"l0": "1", "l1": "2"}); err != nil {
			return nil, err
		}
	}
	var buf bytes.Buffer
	_, err = s.Backup(&buf, nil)
	return buf.Bytes(), err
}
