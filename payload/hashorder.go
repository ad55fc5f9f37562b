package payload

import (
	"slices"
	"unicode/utf16"
)

// The Lambda pollers keep SQS attribute maps in a java.util.HashMap, so the
// keys of "attributes" and "messageAttributes" come out in HashMap iteration
// order: by bucket index (String.hashCode spread by h ^ h>>>16, masked by the
// table size), and within a bucket in insertion order. The recordings confirm
// it: the standard attributes come out as ApproximateReceiveCount,
// SentTimestamp, SenderId, ApproximateFirstReceiveTimestamp (buckets 5, 6,
// 12, 14), the FIFO attributes as AWS's FIFO example lists them, and the
// message attributes Title/Author/WeeksOn as WeeksOn, Author, Title (buckets
// 7, 9, 9, with Author inserted first because SQS returns attributes sorted by
// name).

// javaStringHash is java.lang.String.hashCode over UTF-16 code units.
func javaStringHash(s string) uint32 {
	var h uint32
	for _, r := range s {
		if r >= 0x10000 {
			r1, r2 := utf16.EncodeRune(r)
			h = 31*h + uint32(r1)
			h = 31*h + uint32(r2)
			continue
		}
		h = 31*h + uint32(r)
	}
	return h
}

// hashMapTableSize is the table size of a java.util.HashMap with default
// capacity 16 and load factor 0.75 after n insertions.
func hashMapTableSize(n int) uint32 {
	size := uint32(16)
	for n > int(size)*3/4 {
		size *= 2
	}
	return size
}

func hashMapBucket(key string, size uint32) uint32 {
	h := javaStringHash(key)
	h ^= h >> 16
	return h & (size - 1)
}

// javaHashMapOrder sorts idx (indexes into names) into HashMap iteration
// order, given that the keys were inserted in the order of idx.
func javaHashMapOrder(names func(i int) string, idx []int) {
	size := hashMapTableSize(len(idx))
	slices.SortStableFunc(idx, func(a, b int) int {
		ba, bb := hashMapBucket(names(a), size), hashMapBucket(names(b), size)
		switch {
		case ba < bb:
			return -1
		case ba > bb:
			return 1
		}
		return 0
	})
}
