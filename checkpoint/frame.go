package checkpoint

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"

	bolt "go.etcd.io/bbolt"
)

// bbolt checksums its meta pages but not its data: a byte flipped inside
// a stored value reads back as another value. So every value esmd stores
// carries its own checksum:
//
//	0xFF, CRC-32C of key and payload (4 bytes, little endian), payload
//
// No value written before the framing begins with 0xFF (mappings are JSON,
// positions are sequence numbers, offsets and tokens in UTF-8), so Open
// tells a value of an older store from a framed one, and converts an
// older store in one transaction (bucketFormat then says so). In a
// converted store a value without a sound frame is damage.
const frameMark = 0xFF

var (
	bucketFormat = []byte("format")
	keyFramed    = []byte("framed")
	crcTable     = crc32.MakeTable(crc32.Castagnoli)
)

func frameSum(key, payload []byte) uint32 {
	return crc32.Update(crc32.Checksum(key, crcTable), crcTable, payload)
}

// frame is payload framed under key.
func frame(key, payload []byte) []byte {
	out := make([]byte, 5, 5+len(payload))
	out[0] = frameMark
	binary.LittleEndian.PutUint32(out[1:], frameSum(key, payload))
	return append(out, payload...)
}

// unframe returns the payload of the value v stored under key. In a store
// not yet converted (framed false, read-only opens of older stores) a
// value with no frame is returned as it is.
func unframe(key, v []byte, framed bool) ([]byte, error) {
	if len(v) == 0 || v[0] != frameMark {
		if framed {
			return nil, fmt.Errorf("the value of %q has no checksum", key)
		}
		return v, nil
	}
	if len(v) < 5 {
		return nil, fmt.Errorf("the value of %q is cut short", key)
	}
	payload := v[5:]
	if binary.LittleEndian.Uint32(v[1:]) != frameSum(key, payload) {
		return nil, fmt.Errorf("the value of %q does not match its checksum", key)
	}
	return payload, nil
}

// isFramed reports whether the store's values are all framed.
func isFramed(tx *bolt.Tx) (bool, error) {
	b := tx.Bucket(bucketFormat)
	if b == nil {
		return false, nil
	}
	v := b.Get(keyFramed)
	if _, err := unframe(keyFramed, v, true); err != nil {
		return false, fmt.Errorf("format: %w", err)
	}
	return true, nil
}

// convert frames every value of an older store and marks it framed.
func convert(tx *bolt.Tx) error {
	ms, err := bucket(tx, bucketMappings)
	if err != nil {
		return err
	}
	if err := reframe(ms); err != nil {
		return err
	}
	ps, err := bucket(tx, bucketPositions)
	if err != nil {
		return err
	}
	var lanes [][]byte
	err = ps.ForEach(func(k, v []byte) error {
		if v == nil {
			lanes = append(lanes, k)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range lanes {
		if err := reframe(ps.Bucket(k)); err != nil {
			return err
		}
	}
	f, err := tx.CreateBucketIfNotExists(bucketFormat)
	if err != nil {
		return err
	}
	return f.Put(keyFramed, frame(keyFramed, []byte("1")))
}

// reframe frames the values of b that are not framed yet.
func reframe(b *bolt.Bucket) error {
	type kv struct{ k, v []byte }
	var todo []kv
	err := b.ForEach(func(k, v []byte) error {
		if v != nil && (len(v) == 0 || v[0] != frameMark) {
			todo = append(todo, kv{bytes.Clone(k), frame(k, v)})
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, e := range todo {
		if err := b.Put(e.k, e.v); err != nil {
			return err
		}
	}
	return nil
}
