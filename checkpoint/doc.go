// Package checkpoint is esmd's durable state: the mapping definitions the
// engine keeps, and the positions (checkpoints) pollers use to resume
// exactly where they stopped.
//
// The default implementation is an embedded bbolt file (Open). It is meant
// for one esmd process: Open fails with ErrInUse while another process has
// the file open. The package knows nothing about what it stores: mappings
// are opaque bytes keyed by UUID, and positions are opaque strings keyed by
// mapping and lane.
//
// A damaged store never panics and is never replaced by an empty one:
//   - Open creates a store only where no file exists (written aside and
//     linked into place, so esmd never leaves an empty file behind); an
//     existing file, even of 0 bytes, must be a sound store.
//   - Before bbolt reads a byte, Verify walks the whole file through
//     ReadAt with every bound checked: meta pages, freelist, each page's
//     id, type, element counts and offsets, key order, buckets (bbolt
//     trusts these, and asserts, faults or loops on damage).
//   - Every value carries a CRC-32C (frame.go): bbolt checksums only its
//     meta pages, so without it a flipped byte in a value would read back
//     as another checkpoint. Open checks them all.
//   - Every transaction runs under a guard that turns a bbolt panic or a
//     fault in the memory map (a file truncated under a running store)
//     into a *DamageError.
//
// A damaged file is reported as a *DamageError (errors.Is ErrDamaged) that
// names the file and what to do. Open does not write to a file it found
// damaged. Backup writes a consistent copy of a store in use.
//
// Stores written by earlier versions also have a "leases" bucket (per-lane
// leases that nothing used), which Open drops, and values without a
// checksum, which Open frames in one transaction.
package checkpoint
