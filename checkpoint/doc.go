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
// Stores written by earlier versions also have a "leases" bucket (per-lane
// leases that nothing used); Open drops it.
package checkpoint
