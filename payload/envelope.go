package payload

import (
	"encoding/json"
	"time"
)

// Envelope is the per-invocation part of an event that is not a record:
// the bytes before the first record, those after the last, and how records
// are laid out between them. Each source's descriptor makes its own (the
// constructors below serve the sources whose records this package encodes);
// the batcher and the pipeline only write it.
type Envelope struct {
	// Head is written before the first record (or group), Tail after the
	// last one.
	Head, Tail string
	// Grouped lays records out in arrays under a key of a JSON object
	// ("<topic>-<partition>":[...] for Kafka, "<queue>::<vhost>":[...] for
	// RabbitMQ) instead of one array.
	Grouped bool
	// Windows says the event can carry the tumbling-window fields (the
	// Records events of Kinesis and DynamoDB Streams).
	Windows bool
	// EventSourceARN is the mapping's event source ARN, written in the
	// tumbling-window fields.
	EventSourceARN string
	// Window, for envelopes with Windows and mappings with
	// TumblingWindowInSeconds, adds the tumbling-window fields.
	Window *Window
}

// Records returns the envelope of SQS events: {"Records":[...]}.
func Records(arn string) Envelope {
	return Envelope{Head: `{"Records":[`, Tail: `]}`, EventSourceARN: arn}
}

// StreamRecords returns the envelope of Kinesis and DynamoDB Streams
// events: {"Records":[...]}, with the tumbling-window fields when Window is
// set. arn is written in those fields.
func StreamRecords(arn string) Envelope {
	e := Records(arn)
	e.Windows = true
	return e
}

// MSK returns the envelope of Amazon MSK events.
func MSK(arn, bootstrapServers string) Envelope {
	head := AppendString([]byte(`{"eventSource":"aws:kafka","eventSourceArn":`), arn)
	head = append(head, `,"bootstrapServers":`...)
	head = AppendString(head, bootstrapServers)
	return Envelope{Head: string(append(head, `,"records":{`...)), Tail: `}}`, Grouped: true}
}

// SelfManagedKafka returns the envelope of self-managed Kafka events, which
// have no eventSourceArn.
func SelfManagedKafka(bootstrapServers string) Envelope {
	head := AppendString([]byte(`{"eventSource":"SelfManagedKafka","bootstrapServers":`), bootstrapServers)
	return Envelope{Head: string(append(head, `,"records":{`...)), Tail: `}}`, Grouped: true}
}

// RabbitMQ returns the envelope of Amazon MQ for RabbitMQ events.
func RabbitMQ(arn string) Envelope {
	head := AppendString([]byte(`{"eventSource":"aws:rmq","eventSourceArn":`), arn)
	return Envelope{Head: string(append(head, `,"rmqMessagesByQueue":{`...)), Tail: `}}`, Grouped: true}
}

// ActiveMQ returns the envelope of Amazon MQ for ActiveMQ events.
func ActiveMQ(arn string) Envelope {
	head := AppendString([]byte(`{"eventSource":"aws:mq","eventSourceArn":`), arn)
	return Envelope{Head: string(append(head, `,"messages":[`...)), Tail: `]}`}
}

// DocumentDB returns the envelope of DocumentDB change stream events.
func DocumentDB(arn string) Envelope {
	head := AppendString([]byte(`{"eventSourceArn":`), arn)
	return Envelope{Head: string(append(head, `,"events":[`...)), Tail: `],"eventSource":"aws:docdb"}`}
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
func (e *Envelope) prefix(dst []byte) []byte { return append(dst, e.Head...) }

func (e *Envelope) suffix(dst []byte) []byte {
	w := e.Window
	if w == nil || !e.Windows {
		return append(dst, e.Tail...)
	}
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

// Overhead returns the size of the event with no records: the bytes of the
// envelope itself. For ungrouped kinds an event of n records whose encoded
// sizes add up to total is exactly Overhead()+total+max(n-1,0) bytes.
func (e *Envelope) Overhead() int {
	if e.Window == nil || !e.Windows {
		return len(e.Head) + len(e.Tail)
	}
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
	return e.AppendFunc(dst, group, len(records), func(dst []byte, i int) []byte { return append(dst, records[i]...) })
}

// AppendFunc is Append for n records that rec appends, record i to dst:
// an event of one group written without a Builder.
func (e *Envelope) AppendFunc(dst []byte, group string, n int, rec func(dst []byte, i int) []byte) []byte {
	dst = e.prefix(dst)
	grouped := e.Grouped && n > 0
	if grouped {
		dst = AppendString(dst, group)
		dst = append(dst, ':', '[')
	}
	for i := range n {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = rec(dst, i)
	}
	if grouped {
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
// A Builder keeps references to the added Data slices and Encoders until
// Reset; it does not copy them. The zero value is not usable; use NewBuilder.
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
	enc  Encoder // instead of data: encoded when the event is written
	next int32   // index of the group's next record, -1 at the end
}

// Encoder encodes one record on demand: AppendEncoded appends the same
// bytes Builder.Add would take as data. A record added with AddEncoder is
// encoded straight into the event when the event is written, instead of
// into a buffer of its own that the event then copies (Kafka records, whose
// key and value are base64: most of the cost of a Kafka event).
type Encoder interface {
	AppendEncoded(dst []byte) []byte
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
	if !b.env.Grouped {
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
	b.add(group, len(data), builderRec{data: data, next: -1})
}

// AddEncoder adds a record that enc encodes when the event is written; n
// is the exact length of what enc appends.
func (b *Builder) AddEncoder(group string, n int, enc Encoder) {
	b.add(group, n, builderRec{enc: enc, next: -1})
}

func (b *Builder) add(group string, n int, rec builderRec) {
	b.size += b.delta(group, n)
	ri := int32(len(b.recs))
	b.recs = append(b.recs, rec)
	if b.env.Grouped {
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
	if !b.env.Grouped {
		for i := range b.recs {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = b.recs[i].appendTo(dst)
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
			dst = b.recs[i].appendTo(dst)
		}
		dst = append(dst, ']')
	}
	return b.env.suffix(dst)
}

func (r *builderRec) appendTo(dst []byte) []byte {
	if r.enc != nil {
		return r.enc.AppendEncoded(dst)
	}
	return append(dst, r.data...)
}

// Bytes returns the event in a new slice of exactly Size() bytes.
func (b *Builder) Bytes() []byte {
	return b.AppendTo(make([]byte, 0, b.size))
}
