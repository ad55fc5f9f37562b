package checkpoint

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// The bbolt file format (go.etcd.io/bbolt, internal/common), as far as the
// verifier needs it. All integers are in the machine's byte order.
//
//	page header (16 bytes): id u64, flags u16, count u16, overflow u32
//	meta (after the header of pages 0 and 1): magic u32, version u32,
//	  pageSize u32, flags u32, root bucket {root pgid u64, sequence u64},
//	  freelist pgid u64, high water mark pgid u64, txid u64, checksum u64
//	  (FNV-64a of the meta bytes before it)
//	branch element (16 bytes): pos u32, ksize u32, pgid u64
//	leaf element (16 bytes): flags u32, pos u32, ksize u32, vsize u32
//	  (pos counts from the element itself; the value follows the key)
//	bucket value: root pgid u64, sequence u64, then, when root is 0, an
//	  inline leaf page
//	freelist page: count page ids (u64); a count of 0xFFFF means the real
//	  count is the first u64.
const (
	pageHeaderSize  = 16
	elementSize     = 16
	bucketHeaderLen = 16
	metaOffset      = pageHeaderSize
	metaChecksumAt  = metaOffset + 56
	metaSize        = 64

	flagBranch   = 0x01
	flagLeaf     = 0x02
	flagMeta     = 0x04
	flagFreelist = 0x10
	leafBucket   = 0x01

	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	pgidNoFreelist = ^uint64(0)

	// maxDepth bounds the nesting of pages and buckets the verifier
	// follows. bbolt trees are a handful of levels deep; a chain deeper
	// than this is damage, and the bound keeps the walk's recursion small.
	maxDepth = 64
)

var ne = binary.NativeEndian

// meta is a decoded meta page.
type meta struct {
	slot     int
	pageSize uint64
	root     uint64
	freelist uint64
	hwm      uint64
	txid     uint64
}

// parseMeta decodes the meta in one page's bytes, or says why it is not
// valid (bbolt's Meta.Validate: magic, version, checksum).
func parseMeta(b []byte) (meta, error) {
	if len(b) < metaOffset+metaSize {
		return meta{}, errors.New("short")
	}
	m := b[metaOffset:]
	if ne.Uint32(m[0:]) != boltMagic {
		return meta{}, errors.New("not a bbolt meta page (bad magic)")
	}
	if v := ne.Uint32(m[4:]); v != boltVersion {
		return meta{}, fmt.Errorf("bbolt format version %d, want %d", v, boltVersion)
	}
	h := fnv.New64a()
	h.Write(b[metaOffset:metaChecksumAt])
	if h.Sum64() != ne.Uint64(b[metaChecksumAt:]) {
		return meta{}, errors.New("checksum mismatch")
	}
	return meta{
		pageSize: uint64(ne.Uint32(m[8:])),
		root:     ne.Uint64(m[16:]),
		freelist: ne.Uint64(m[32:]),
		hwm:      ne.Uint64(m[40:]),
		txid:     ne.Uint64(m[48:]),
	}, nil
}

// Verification is what Verify found in a sound store file.
type Verification struct {
	PageSize  int
	Pages     uint64 // the high water mark: pages in use or free
	FreePages int
	Txid      uint64
	// Notes are findings that do not stop the store from opening, such as
	// one damaged meta page (bbolt then uses the other, one transaction
	// older).
	Notes []string
}

// verifier walks a bbolt file through ReadAt, never through a memory map,
// checking every bound bbolt trusts when it follows the file's pointers:
// bbolt asserts (panics) on some damage and faults or loops forever on the
// rest, in goroutines of its own that no recover reaches. A file that
// passes is one bbolt reads without either.
type verifier struct {
	r        io.ReaderAt
	size     int64
	pageSize uint64
	hwm      uint64
	// used marks every page the tree, the freelist or the metas own; a
	// page owned twice is damage (and would make a cycle).
	used map[uint64]string
	free map[uint64]bool
}

// verifyFile checks the bbolt file f holds, whose size is size.
func verifyFile(f io.ReaderAt, size int64) (Verification, error) {
	var out Verification
	m, notes, err := chooseMeta(f, size)
	if err != nil {
		return out, err
	}
	out.Notes = notes
	v := &verifier{r: f, size: size, pageSize: m.pageSize, hwm: m.hwm, used: map[uint64]string{0: "meta", 1: "meta"}, free: map[uint64]bool{}}
	if m.hwm < 3 {
		return out, fmt.Errorf("meta page %d: high water mark %d is below the smallest store", m.slot, m.hwm)
	}
	if m.hwm > uint64(size)/m.pageSize {
		return out, fmt.Errorf("the file is truncated: it holds %d bytes, %d pages of %d bytes are in use", size, m.hwm, m.pageSize)
	}
	if m.freelist != pgidNoFreelist {
		if err := v.freelist(m.freelist); err != nil {
			return out, err
		}
	}
	if m.root < 2 || m.root >= m.hwm {
		return out, fmt.Errorf("root bucket page %d is out of range [2, %d)", m.root, m.hwm)
	}
	if err := v.tree(m.root, nil, nil, 1, "root bucket"); err != nil {
		return out, err
	}
	if m.freelist != pgidNoFreelist {
		for id := uint64(2); id < m.hwm; id++ {
			if v.used[id] == "" && !v.free[id] {
				return out, fmt.Errorf("page %d is neither in use nor free", id)
			}
		}
	}
	out.PageSize, out.Pages, out.FreePages, out.Txid = int(m.pageSize), m.hwm, len(v.free), m.txid
	return out, nil
}

// chooseMeta finds the page size and the meta page bbolt will use, as
// bbolt's Open does: the page size from meta 0, else from a valid meta 1
// at any power-of-two offset; then the valid meta with the higher txid.
func chooseMeta(f io.ReaderAt, size int64) (meta, []string, error) {
	if size < 2*1024 {
		return meta{}, nil, fmt.Errorf("the file is %d bytes, too short for a store", size)
	}
	read := func(off int64, n int) []byte {
		b := make([]byte, n)
		k, _ := f.ReadAt(b, off)
		return b[:k]
	}
	m0, err0 := parseMeta(read(0, metaOffset+metaSize))
	pageSize := m0.pageSize
	if err0 != nil {
		for i := 0; i <= 14; i++ {
			off := int64(1024) << i
			if off >= size-1024 {
				break
			}
			if m, err := parseMeta(read(off, metaOffset+metaSize)); err == nil {
				pageSize = m.pageSize
				break
			}
		}
	}
	if pageSize < 1024 || pageSize > 1<<16 || pageSize&(pageSize-1) != 0 {
		if err0 != nil {
			return meta{}, nil, fmt.Errorf("no valid meta page (meta 0: %v)", err0)
		}
		return meta{}, nil, fmt.Errorf("meta page 0: page size %d is not a power of two in [1024, 65536]", pageSize)
	}
	if size < int64(2*pageSize) {
		return meta{}, nil, fmt.Errorf("the file is %d bytes, shorter than its two %d-byte meta pages", size, pageSize)
	}
	m1, err1 := parseMeta(read(int64(pageSize), metaOffset+metaSize))
	m0.slot, m1.slot = 0, 1
	// The choice is bbolt's (DB.meta): the valid meta with the higher
	// txid. Only then is its page size compared, so that the verified
	// meta is always the one bbolt reads.
	var chosen meta
	var notes []string
	switch {
	case err0 != nil && err1 != nil:
		return meta{}, nil, fmt.Errorf("both meta pages are damaged (meta 0: %v; meta 1: %v)", err0, err1)
	case err0 != nil:
		chosen = m1
		notes = []string{fmt.Sprintf("meta page 0 is damaged (%v); the store is read as of transaction %d, from meta page 1", err0, m1.txid)}
	case err1 != nil:
		chosen = m0
		notes = []string{fmt.Sprintf("meta page 1 is damaged (%v); the store is read as of transaction %d, from meta page 0", err1, m0.txid)}
	case m1.txid > m0.txid:
		chosen = m1
	default:
		chosen = m0
	}
	if chosen.pageSize != pageSize {
		return meta{}, nil, fmt.Errorf("meta page %d: page size %d, the file's is %d", chosen.slot, chosen.pageSize, pageSize)
	}
	return chosen, notes, nil
}

// page reads page id with its overflow pages, checking its header.
func (v *verifier) page(id uint64, owner string) ([]byte, error) {
	if id < 2 || id >= v.hwm {
		return nil, fmt.Errorf("%s: page %d is out of range [2, %d)", owner, id, v.hwm)
	}
	// One read for the page; a second for its overflow pages, if any.
	b := make([]byte, v.pageSize)
	if _, err := v.r.ReadAt(b, int64(id*v.pageSize)); err != nil {
		return nil, fmt.Errorf("%s: read page %d: %w", owner, id, err)
	}
	if got := ne.Uint64(b); got != id {
		return nil, fmt.Errorf("%s: page %d identifies itself as page %d", owner, id, got)
	}
	overflow := uint64(ne.Uint32(b[12:]))
	if overflow >= v.hwm-id {
		return nil, fmt.Errorf("%s: page %d has %d overflow pages, past the high water mark %d", owner, id, overflow, v.hwm)
	}
	for i := uint64(0); i <= overflow; i++ {
		if prev := v.used[id+i]; prev != "" {
			return nil, fmt.Errorf("%s: page %d is also used by %s", owner, id+i, prev)
		}
		if v.free[id+i] {
			return nil, fmt.Errorf("%s: page %d is in use and free", owner, id+i)
		}
		v.used[id+i] = owner
	}
	if overflow > 0 {
		b = append(b, make([]byte, overflow*v.pageSize)...)
		if _, err := v.r.ReadAt(b[v.pageSize:], int64((id+1)*v.pageSize)); err != nil {
			return nil, fmt.Errorf("%s: read page %d: %w", owner, id, err)
		}
	}
	return b, nil
}

func (v *verifier) freelist(id uint64) error {
	b, err := v.page(id, "freelist")
	if err != nil {
		return err
	}
	if f := ne.Uint16(b[8:]); f != flagFreelist {
		return fmt.Errorf("freelist: page %d has flags %#x, not a freelist page", id, f)
	}
	start, count := uint64(pageHeaderSize), uint64(ne.Uint16(b[10:]))
	if count == 0xFFFF {
		count = ne.Uint64(b[pageHeaderSize:])
		start += 8
	}
	if count > (uint64(len(b))-start)/8 {
		return fmt.Errorf("freelist: page %d claims %d free pages, more than it holds", id, count)
	}
	for i := range count {
		p := ne.Uint64(b[start+8*i:])
		if p < 2 || p >= v.hwm {
			return fmt.Errorf("freelist: free page %d is out of range [2, %d)", p, v.hwm)
		}
		if v.free[p] {
			return fmt.Errorf("freelist: page %d is freed twice", p)
		}
		v.free[p] = true
	}
	for p := id; v.used[p] == "freelist"; p++ {
		if v.free[p] {
			return fmt.Errorf("freelist: page %d holds the freelist and is free", p)
		}
	}
	return nil
}

// tree checks the B+tree whose root is page id; every key in it must lie
// in [lo, hi) (nil: unbounded).
func (v *verifier) tree(id uint64, lo, hi []byte, depth int, owner string) error {
	if depth > maxDepth {
		return fmt.Errorf("%s: pages nest deeper than %d levels", owner, maxDepth)
	}
	b, err := v.page(id, owner)
	if err != nil {
		return err
	}
	switch flags := ne.Uint16(b[8:]); flags {
	case flagBranch:
		return v.branch(id, b, lo, hi, depth, owner)
	case flagLeaf:
		return v.leaf(fmt.Sprintf("page %d", id), b, lo, hi, depth, owner)
	default:
		return fmt.Errorf("%s: page %d has flags %#x, neither branch nor leaf", owner, id, flags)
	}
}

func (v *verifier) branch(id uint64, b []byte, lo, hi []byte, depth int, owner string) error {
	count := int(ne.Uint16(b[10:]))
	if count == 0 {
		return fmt.Errorf("%s: branch page %d is empty", owner, id)
	}
	if pageHeaderSize+count*elementSize > len(b) {
		return fmt.Errorf("%s: branch page %d claims %d elements, more than it holds", owner, id, count)
	}
	keys := make([][]byte, count)
	kids := make([]uint64, count)
	for i := range count {
		at := pageHeaderSize + i*elementSize
		pos, ksize := uint64(ne.Uint32(b[at:])), uint64(ne.Uint32(b[at+4:]))
		key, err := span(b, at, pos, ksize)
		if err != nil {
			return fmt.Errorf("%s: branch page %d element %d: key %w", owner, id, i, err)
		}
		if err := ordered(key, i, keys, lo, hi); err != nil {
			return fmt.Errorf("%s: branch page %d element %d: %w", owner, id, i, err)
		}
		keys[i], kids[i] = key, ne.Uint64(b[at+8:])
	}
	for i, kid := range kids {
		next := hi
		if i+1 < count {
			next = keys[i+1]
		}
		if err := v.tree(kid, keys[i], next, depth+1, owner); err != nil {
			return err
		}
	}
	return nil
}

// leaf checks the leaf page b (a page of the file, or a bucket's inline
// page) and every bucket it holds.
func (v *verifier) leaf(where string, b []byte, lo, hi []byte, depth int, owner string) error {
	count := int(ne.Uint16(b[10:]))
	if pageHeaderSize+count*elementSize > len(b) {
		return fmt.Errorf("%s: leaf %s claims %d elements, more than it holds", owner, where, count)
	}
	keys := make([][]byte, count)
	for i := range count {
		at := pageHeaderSize + i*elementSize
		flags := ne.Uint32(b[at:])
		pos, ksize, vsize := uint64(ne.Uint32(b[at+4:])), uint64(ne.Uint32(b[at+8:])), uint64(ne.Uint32(b[at+12:]))
		key, err := span(b, at, pos, ksize)
		if err != nil {
			return fmt.Errorf("%s: leaf %s element %d: key %w", owner, where, i, err)
		}
		val, err := span(b, at, pos+ksize, vsize)
		if err != nil {
			return fmt.Errorf("%s: leaf %s element %d: value %w", owner, where, i, err)
		}
		if err := ordered(key, i, keys, lo, hi); err != nil {
			return fmt.Errorf("%s: leaf %s element %d: %w", owner, where, i, err)
		}
		keys[i] = key
		switch flags {
		case 0:
		case leafBucket:
			if err := v.bucket(key, val, depth, owner); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: leaf %s element %d has flags %#x", owner, where, i, flags)
		}
	}
	return nil
}

// bucket checks the bucket whose header is val: a tree of pages, or an
// inline leaf page inside val itself.
func (v *verifier) bucket(name, val []byte, depth int, owner string) error {
	owner = fmt.Sprintf("%s/%q", owner, name)
	if depth+1 > maxDepth {
		return fmt.Errorf("%s: buckets nest deeper than %d levels", owner, maxDepth)
	}
	if len(val) < bucketHeaderLen {
		return fmt.Errorf("%s: bucket header of %d bytes", owner, len(val))
	}
	root := ne.Uint64(val)
	if root != 0 {
		return v.tree(root, nil, nil, depth+1, owner)
	}
	inline := val[bucketHeaderLen:]
	if len(inline) < pageHeaderSize {
		return fmt.Errorf("%s: inline bucket of %d bytes", owner, len(inline))
	}
	if f := ne.Uint16(inline[8:]); f != flagLeaf {
		return fmt.Errorf("%s: inline page has flags %#x, not a leaf", owner, f)
	}
	// bbolt reads an inline page in place, so its elements must be
	// aligned as a page's are; bbolt copies a misaligned value first, and
	// the copy is what the bounds below are about.
	return v.leaf("inline page", inline, nil, nil, depth+1, owner)
}

// span is the n bytes at offset at+pos of b.
func span(b []byte, at int, pos, n uint64) ([]byte, error) {
	start := uint64(at) + pos
	if start > uint64(len(b)) || n > uint64(len(b))-start {
		return nil, fmt.Errorf("of %d bytes at %d runs past the page's %d bytes", n, start, len(b))
	}
	return b[start : start+n], nil
}

// ordered checks that key, the i-th of a page whose earlier keys are
// keys[:i], is not empty, follows them and lies in [lo, hi).
func ordered(key []byte, i int, keys [][]byte, lo, hi []byte) error {
	switch {
	case len(key) == 0:
		return errors.New("empty key")
	case i > 0 && bytes.Compare(keys[i-1], key) >= 0:
		return fmt.Errorf("key %x does not follow %x", key, keys[i-1])
	case i == 0 && lo != nil && bytes.Compare(key, lo) < 0:
		return fmt.Errorf("key %x is below its parent's %x", key, lo)
	case hi != nil && bytes.Compare(key, hi) >= 0:
		return fmt.Errorf("key %x is not below the next parent key %x", key, hi)
	}
	return nil
}

// Verify checks the store file at path without opening it with bbolt:
// every page, key and bucket bbolt would follow. It never changes the
// file. A damaged file is a *DamageError.
func Verify(path string) (Verification, error) {
	f, err := os.Open(path)
	if err != nil {
		return Verification{}, fmt.Errorf("checkpoint: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Verification{}, fmt.Errorf("checkpoint: %w", err)
	}
	return verifyOpen(path, f, fi.Size())
}

func verifyOpen(path string, f io.ReaderAt, size int64) (Verification, error) {
	if size == 0 {
		return Verification{}, &DamageError{Path: path, Reason: "the file is empty (0 bytes)"}
	}
	ver, err := verifyFile(f, size)
	if err != nil {
		return ver, &DamageError{Path: path, Reason: err.Error()}
	}
	return ver, nil
}
