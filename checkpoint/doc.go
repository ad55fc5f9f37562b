// Package checkpoint is esmd's durable state: the mapping definitions the
// engine keeps, and the positions (checkpoints) and leases pollers use to
// resume exactly where they stopped.
//
// The default implementation is an embedded bbolt file (Open). It is meant
// for one esmd process; several workers share work through a DynamoDB or
// PostgreSQL lease table (see docs/architecture.md). The package knows
// nothing about what it stores: mappings are opaque bytes keyed by UUID, and
// positions are opaque strings keyed by mapping and lane.
package checkpoint
