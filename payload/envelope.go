package payload

import (
	"encoding/json"
	"time"
)

// Kind is the event source kind of an envelope.
type Kind uint8

// Source kinds.
const (
	KindSQS Kind = iota + 1
	KindKinesis
	KindDynamoDB
	KindMSK              // Amazon MSK, eventSource "aws:kafka"
	KindSelfManagedKafka // eventSource "SelfManagedKafka", no eventSourceArn
	KindActiveMQ
	KindRabbitMQ
	KindDocumentDB
)

var kindNames = [...]string{"", "sqs", "kinesis", "dynamodb", "msk", "selfmanagedkafka", "activemq", "rabbitmq", "documentdb"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// Grouped reports whether records of this kind are grouped under a key in
// the event (Kafka by "<topic>-<partition>", RabbitMQ by "<queue>::<vhost>").
func (k Kind) Grouped() bool {
	return k == KindMSK || k == KindSelfManagedKafka || k == KindRabbitMQ
}

// Envelope is the per-invocation part of an event that is not a record.
type Envelope struct {
	Kind Kind
	// EventSourceARN is the mapping's event source ARN (queue, stream,
	// cluster, broker). Not written for self-managed Kafka.
	EventSourceARN string
	// BootstrapServers is the Kafka "bootstrapServers" value,
	// comma-separated host:port.
	BootstrapServers string
	// Window, for Kinesis and DynamoDB mappings with
	// TumblingWindowInSeconds, adds the tumbling-window fields.
	Window *Window
}

// Window holds the tumbling-window fields of a stream event (spec 1.3).
type Window struct {
	Start, End time.Time
	// State is the state the function returned for this window and shard;
	// nil is written as {} (the start of a window).
	State                   json.RawMessage
	ShardID                 string
	IsFinalInvokeForWindow  bool
	IsWindowTerminatedEarly bool
}

// prefix returns the bytes before the first record (or group) and suffix
// those after the last.
func (e *Envelope) prefix(dst []byte) []byte {
	switch e.Kind {
	case KindSQS, KindKinesis, KindDynamoDB:
		return append(dst, `{"Records":[`...)
	case KindMSK, KindSelfManagedKafka:
		if e.Kind == KindMSK {
			dst = append(dst, `{"eventSource":"aws:kafka","eventSourceArn":`...)
			dst = AppendString(dst, e.EventSourceARN)
		} else {
			dst = append(dst, `{"eventSource":"SelfManagedKafka"`...)
		}
		dst = append(dst, `,"bootstrapServers":`...)
		dst = AppendString(dst, e.BootstrapServers)
		return append(dst, `,"records":{`...)
	case KindRabbitMQ:
		dst = append(dst, `{"eventSource":"aws:rmq","eventSourceArn":`...)
		dst = AppendString(dst, e.EventSourceARN)
		return append(dst, `,"rmqMessagesByQueue":{`...)
	case KindActiveMQ:
		dst = append(dst, `{"eventSource":"aws:mq","eventSourceArn":`...)
		dst = AppendString(dst, e.EventSourceARN)
		return append(dst, `,"messages":[`...)
	case KindDocumentDB:
		dst = append(dst, `{"eventSourceArn":`...)
		dst = AppendString(dst, e.EventSourceARN)
		return append(dst, `,"events":[`...)
	}
	panic("payload: unknown envelope kind")
}

func (e *Envelope) suffix(dst []byte) []byte {
	switch e.Kind {
	case KindKinesis, KindDynamoDB:
		if w := e.Window; w != nil {
			dst = append(dst, `],"window":{"start":`...)
			dst = AppendISOSeconds(dst, w.Start)
			dst = append(dst, `,"end":`...)
			dst = AppendISOSeconds(dst, w.End)
			dst = append(dst, `},"state":`...)
			if len(w.State) == 0 {
				dst = append(dst, '{', '}')
			} else {
				dst = append(dst, w.State...)
			}
			dst = append(dst, `,"shardId":`...)
			dst = AppendString(dst, w.ShardID)
			dst = append(dst, `,"eventSourceARN":`...)
			dst = AppendString(dst, e.EventSourceARN)
			dst = append(dst, `,"isFinalInvokeForWindow":`...)
			dst = appendBool(dst, w.IsFinalInvokeForWindow)
			dst = append(dst, `,"isWindowTerminatedEarly":`...)
			dst = appendBool(dst, w.IsWindowTerminatedEarly)
			return append(dst, '}')
		}
		return append(dst, ']', '}')
	case KindSQS, KindActiveMQ:
		return append(dst, ']', '}')
	case KindMSK, KindSelfManagedKafka, KindRabbitMQ:
		return append(dst, '}', '}')
	case KindDocumentDB:
		return append(dst, `],"eventSource":"aws:docdb"}`...)
	}
	panic("payload: unknown envelope kind")
}

// Overhead returns the size of the event with no records: the bytes of the
// envelope itself. For ungrouped kinds an event of n records whose encoded
// sizes add up to total is exactly Overhead()+total+max(n-1,0) bytes.
func (e *Envelope) Overhead() int {
	var buf [512]byte
	b := e.prefix(buf[:0])
	b = e.suffix(b)
	return len(b)
}

// Append appends the event for records that are all in one group (or
// ungrouped kinds): records are the encoded elements, in order. group is the
// Kafka "<topic>-<partition>" or RabbitMQ "<queue>::<vhost>" key and is
// ignored for other kinds. An empty records slice gives an event with an
// empty array (or map).
func (e *Envelope) Append(dst []byte, group string, records [][]byte) []byte {
	dst = e.prefix(dst)
	grouped := e.Kind.Grouped()
	if grouped && len(records) > 0 {
		dst = AppendString(dst, group)
		dst = append(dst, ':', '[')
	}
	for i, r := range records {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, r...)
	}
	if grouped && len(records) > 0 {
		dst = append(dst, ']')
	}
	return e.suffix(dst)
}

// Builder accumulates encoded records into one event and tracks its exact
// encoded size, so a batcher can ask what the size would be before adding a
// record. Records of grouped kinds (Kafka, RabbitMQ) may come from several
// groups in any interleaving; the event lists the groups in order of first
// appearance and each group's records in the order they were added.
//
// A Builder keeps references to the added Data slices until Reset; it does
// not copy them. The zero value is not usable; use NewBuilder.
type Builder struct {
	env      Envelope
	overhead int
	size     int // current exact size
	recs     []builderRec
	groups   []builderGroup
	index    map[string]int // group -> index in groups (grouped kinds)
}

type builderRec struct {
	data []byte
	next int32 // index of the group's next record, -1 at the end
}

type builderGroup struct {
	key        string
	n          int
	head, tail int32
}

// NewBuilder returns a Builder for events with the given envelope.
func NewBuilder(env Envelope) *Builder {
	b := &Builder{}
	b.Reset(env)
	return b
}

// Reset empties the builder and sets a new envelope (for example the next
// window state), keeping allocated memory.
func (b *Builder) Reset(env Envelope) {
	b.env = env
	b.overhead = env.Overhead()
	b.size = b.overhead
	clear(b.recs)
	b.recs = b.recs[:0]
	b.groups = b.groups[:0]
	if b.index != nil {
		clear(b.index)
	}
}

// Len returns the number of records added.
func (b *Builder) Len() int { return len(b.recs) }

// Size returns the exact size in bytes of the event Bytes would return now.
func (b *Builder) Size() int { return b.size }

// SizeWith returns the exact size the event would have after Add(group,
// data) with len(data) == n.
func (b *Builder) SizeWith(group string, n int) int {
	return b.size + b.delta(group, n)
}

func (b *Builder) delta(group string, n int) int {
	if !b.env.Kind.Grouped() {
		if len(b.recs) > 0 {
			return n + 1
		}
		return n
	}
	if gi, ok := b.lookup(group); ok && b.groups[gi].n > 0 {
		return n + 1
	}
	// New group: "key":[data] plus a comma unless it is the first group.
	d := StringSize(group) + 3 + n
	if len(b.groups) > 0 {
		d++
	}
	return d
}

func (b *Builder) lookup(group string) (int, bool) {
	// Most batches hold one or a few groups: a linear scan beats a map.
	if len(b.groups) <= 8 {
		for i := range b.groups {
			if b.groups[i].key == group {
				return i, true
			}
		}
		return 0, false
	}
	i, ok := b.index[group]
	return i, ok
}

// Add appends one encoded record to the event. group is ignored for
// ungrouped kinds.
func (b *Builder) Add(group string, data []byte) {
	b.size += b.delta(group, len(data))
	ri := int32(len(b.recs))
	b.recs = append(b.recs, builderRec{data: data, next: -1})
	if b.env.Kind.Grouped() {
		gi, ok := b.lookup(group)
		if !ok {
			gi = len(b.groups)
			b.groups = append(b.groups, builderGroup{key: group, head: ri, tail: ri})
			if len(b.groups) > 8 {
				if b.index == nil {
					b.index = make(map[string]int)
				}
				if len(b.index) == 0 {
					for i := range b.groups {
						b.index[b.groups[i].key] = i
					}
				} else {
					b.index[group] = gi
				}
			}
		}
		g := &b.groups[gi]
		if g.n > 0 {
			b.recs[g.tail].next = ri
			g.tail = ri
		}
		g.n++
	}
}

// AppendTo appends the event to dst. The result has exactly Size() more
// bytes.
func (b *Builder) AppendTo(dst []byte) []byte {
	dst = b.env.prefix(dst)
	if !b.env.Kind.Grouped() {
		for i := range b.recs {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, b.recs[i].data...)
		}
		return b.env.suffix(dst)
	}
	for gi := range b.groups {
		if gi > 0 {
			dst = append(dst, ',')
		}
		dst = AppendString(dst, b.groups[gi].key)
		dst = append(dst, ':', '[')
		for i := b.groups[gi].head; i >= 0; i = b.recs[i].next {
			if i != b.groups[gi].head {
				dst = append(dst, ',')
			}
			dst = append(dst, b.recs[i].data...)
		}
		dst = append(dst, ']')
	}
	return b.env.suffix(dst)
}

// Bytes returns the event in a new slice of exactly Size() bytes.
func (b *Builder) Bytes() []byte {
	return b.AppendTo(make([]byte, 0, b.size))
}
