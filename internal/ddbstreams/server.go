package ddbstreams

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
)

// IteratorTTL is how long a shard iterator stays valid, as on AWS.
const IteratorTTL = 15 * time.Minute

// seqBase makes every sequence number 20 digits long, so that sequence
// numbers compare the same as strings and as numbers.
const seqBase uint64 = 10_000_000_000_000_000_000

// Option configures a Server.
type Option func(*Server)

// WithClock sets the clock of record creation times and iterator expiry
// (default time.Now).
func WithClock(now func() time.Time) Option { return func(s *Server) { s.now = now } }

// WithRegion sets the region of stream ARNs and records (default us-east-1).
func WithRegion(region string) Option { return func(s *Server) { s.region = region } }

// WithAccount sets the account id of stream ARNs (default 000000000000).
func WithAccount(account string) Option { return func(s *Server) { s.account = account } }

// Server is an in-memory DynamoDB Streams server. Its methods are safe for
// concurrent use.
type Server struct {
	now     func() time.Time
	region  string
	account string

	ln   net.Listener
	srv  *http.Server
	done chan struct{}

	mu      sync.Mutex
	streams []*stream // creation order
	byARN   map[string]*stream
	seq     uint64
	nshard  uint64
	calls   map[string]int
	faults  map[string][]fault
}

type fault struct {
	status   int
	typ, msg string
}

type stream struct {
	arn, table, label string
	view              types.StreamViewType
	keySchema         []types.KeySchemaElement
	created           time.Time
	status            types.StreamStatus
	shards            []*shard // creation order
	byID              map[string]*shard
}

type shard struct {
	id, parent string
	lo, hi     uint64 // hash range of the item keys routed here
	startSeq   uint64
	endSeq     uint64 // set when closed
	closed     bool
	recs       []rec
	trimmed    int // recs[:trimmed] are trimmed
}

type rec struct {
	seq     uint64
	created int64 // ApproximateCreationDateTime, Unix seconds
	size    int64
	json    []byte // the Record as it goes on the wire
}

// Start starts a server on a free port of 127.0.0.1.
func Start(opts ...Option) (*Server, error) {
	s := &Server{
		now: time.Now, region: "us-east-1", account: "000000000000",
		byARN: map[string]*stream{}, seq: seqBase,
		calls: map[string]int{}, faults: map[string][]fault{},
		done: make(chan struct{}),
	}
	for _, o := range opts {
		o(s)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("ddbstreams: listen: %w", err)
	}
	s.ln = ln
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

// URL is the server's endpoint, http://127.0.0.1:port.
func (s *Server) URL() string { return "http://" + s.ln.Addr().String() }

// Close stops the server at once (connections are closed, not drained:
// a client's idle or half-opened connection would hold a graceful
// shutdown for seconds) and waits for its goroutine.
func (s *Server) Close() error {
	err := s.srv.Close()
	<-s.done
	return err
}

// Calls returns how many requests an operation ("GetRecords", ...) got.
func (s *Server) Calls(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

// StreamCalls returns how many requests of an operation named a stream
// (GetRecords: through its iterator) and got past the stream lookup.
func (s *Server) StreamCalls(op, streamARN string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op+" "+streamARN]
}

// Fail makes the next n requests of an operation fail with an error of
// type typ ("LimitExceededException", "InternalServerError",
// "ExpiredIteratorException", ...) and message msg; status is 400, or 500
// for InternalServerError.
func (s *Server) Fail(op string, n int, typ, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	status := http.StatusBadRequest
	if typ == "InternalServerError" {
		status = http.StatusInternalServerError
	}
	for range n {
		s.faults[op] = append(s.faults[op], fault{status, typ, msg})
	}
}

// StreamConfig describes a stream to create.
type StreamConfig struct {
	// Table is the table name. Required.
	Table string
	// ViewType is the StreamViewType (default NEW_AND_OLD_IMAGES).
	ViewType types.StreamViewType
	// KeySchema is the table's key (default a HASH key "id").
	KeySchema []types.KeySchemaElement
	// Shards is the number of open shards to start with (default 1).
	Shards int
}

// CreateStream creates an ENABLED stream and returns its ARN,
// arn:aws:dynamodb:<region>:<account>:table/<table>/stream/<label>.
func (s *Server) CreateStream(c StreamConfig) (string, error) {
	if c.Table == "" {
		return "", errors.New("ddbstreams: StreamConfig.Table is required")
	}
	if c.ViewType == "" {
		c.ViewType = types.StreamViewTypeNewAndOldImages
	}
	if c.KeySchema == nil {
		name := "id"
		c.KeySchema = []types.KeySchemaElement{{AttributeName: &name, KeyType: types.KeyTypeHash}}
	}
	if c.Shards <= 0 {
		c.Shards = 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	created := s.now().UTC()
	label := created.Format("2006-01-02T15:04:05.000")
	arn := fmt.Sprintf("arn:aws:dynamodb:%s:%s:table/%s/stream/%s", s.region, s.account, c.Table, label)
	for s.byARN[arn] != nil { // two streams of one table in the same millisecond
		created = created.Add(time.Millisecond)
		label = created.Format("2006-01-02T15:04:05.000")
		arn = fmt.Sprintf("arn:aws:dynamodb:%s:%s:table/%s/stream/%s", s.region, s.account, c.Table, label)
	}
	st := &stream{
		arn: arn, table: c.Table, label: label, view: c.ViewType, keySchema: c.KeySchema,
		created: created, status: types.StreamStatusEnabled, byID: map[string]*shard{},
	}
	for _, r := range splitRange(0, ^uint64(0), c.Shards) {
		s.newShard(st, "", r[0], r[1])
	}
	s.streams = append(s.streams, st)
	s.byARN[arn] = st
	return arn, nil
}

// newShard adds an open shard; s.mu is held.
func (s *Server) newShard(st *stream, parent string, lo, hi uint64) *shard {
	s.nshard++
	s.seq++
	var b [4]byte
	_, _ = rand.Read(b[:])
	sh := &shard{
		id:     fmt.Sprintf("shardId-%020d-%s", uint64(s.now().UnixMilli())*1000+s.nshard%1000, hex.EncodeToString(b[:])),
		parent: parent, lo: lo, hi: hi, startSeq: s.seq,
	}
	st.shards = append(st.shards, sh)
	st.byID[sh.id] = sh
	return sh
}

// splitRange divides [lo, hi] into n contiguous ranges.
func splitRange(lo, hi uint64, n int) [][2]uint64 {
	out := make([][2]uint64, 0, n)
	width := (hi - lo) / uint64(n)
	for i := range n {
		a := lo + uint64(i)*width
		b := a + width - 1
		if i == n-1 {
			b = hi
		}
		out = append(out, [2]uint64{a, b})
	}
	return out
}

// Change is one item change to append to a stream.
type Change struct {
	// EventName is INSERT, MODIFY or REMOVE. Required.
	EventName types.OperationType
	// Keys is the item's key. Required.
	Keys map[string]types.AttributeValue
	// NewImage and OldImage are the item after and before the change; the
	// stream keeps only what its StreamViewType says.
	NewImage, OldImage map[string]types.AttributeValue
	// UserIdentity is set for TTL deletes.
	UserIdentity *types.Identity
	// Created is ApproximateCreationDateTime (default now), rounded down
	// to the second as on AWS.
	Created time.Time
	// ShardID writes to this open shard instead of the one the key's hash
	// routes to.
	ShardID string
}

// Appended is where Put wrote a change.
type Appended struct {
	ShardID, SequenceNumber, EventID string
}

// Put appends a change to a stream, routed to the open shard whose hash
// range holds a hash of the item key (so one item's changes stay in one
// shard, then in that shard's children).
func (s *Server) Put(streamARN string, c Change) (Appended, error) {
	if c.EventName == "" || len(c.Keys) == 0 {
		return Appended{}, errors.New("ddbstreams: Change needs EventName and Keys")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.byARN[streamARN]
	if st == nil {
		return Appended{}, fmt.Errorf("ddbstreams: no stream %s", streamARN)
	}
	if st.status != types.StreamStatusEnabled {
		return Appended{}, fmt.Errorf("ddbstreams: stream %s is %s", streamARN, st.status)
	}
	var sh *shard
	if c.ShardID != "" {
		sh = st.byID[c.ShardID]
		if sh == nil || sh.closed {
			return Appended{}, fmt.Errorf("ddbstreams: no open shard %s", c.ShardID)
		}
	} else {
		h := KeyHash(c.Keys)
		for _, x := range st.shards {
			if !x.closed && x.lo <= h && h <= x.hi {
				sh = x
				break
			}
		}
		if sh == nil {
			return Appended{}, fmt.Errorf("ddbstreams: no open shard for hash %d", h)
		}
	}
	created := c.Created
	if created.IsZero() {
		created = s.now()
	}
	created = created.Truncate(time.Second)
	s.seq++
	var idb [16]byte
	_, _ = rand.Read(idb[:])
	eventID := hex.EncodeToString(idb[:])
	newImg, oldImg := c.NewImage, c.OldImage
	switch st.view {
	case types.StreamViewTypeKeysOnly:
		newImg, oldImg = nil, nil
	case types.StreamViewTypeNewImage:
		oldImg = nil
	case types.StreamViewTypeOldImage:
		newImg = nil
	}
	size := attrMapSize(c.Keys) + attrMapSize(newImg) + attrMapSize(oldImg)
	seq := fmt.Sprint(s.seq)
	r := recordJSON{
		AwsRegion: s.region, EventID: eventID, EventName: string(c.EventName),
		EventSource: "aws:dynamodb", EventVersion: "1.1",
		Dynamodb: streamRecordJSON{
			ApproximateCreationDateTime: created.Unix(),
			Keys:                        attrMap(c.Keys), NewImage: attrMap(newImg), OldImage: attrMap(oldImg),
			SequenceNumber: seq, SizeBytes: size, StreamViewType: string(st.view),
		},
	}
	if c.UserIdentity != nil {
		r.UserIdentity = &identityJSON{PrincipalID: deref(c.UserIdentity.PrincipalId), Type: deref(c.UserIdentity.Type)}
	}
	b, err := marshal(r)
	if err != nil {
		return Appended{}, err
	}
	sh.recs = append(sh.recs, rec{seq: s.seq, created: created.Unix(), size: size, json: b})
	return Appended{ShardID: sh.id, SequenceNumber: seq, EventID: eventID}, nil
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// KeyHash is the hash Put routes an item key with: FNV-64a of the key's
// attribute names and encoded values, in name order.
func KeyHash(keys map[string]types.AttributeValue) uint64 {
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	h := fnv.New64a()
	for _, k := range names {
		h.Write([]byte(k))
		h.Write([]byte{0})
		h.Write(appendAttr(nil, keys[k]))
		h.Write([]byte{0})
	}
	return h.Sum64()
}

// Split closes an open shard and creates n children (n = 1 is the
// rollover DynamoDB does every few hours; n = 2 a partition split) whose
// ParentShardId is the closed shard and whose hash ranges share its range.
// It returns the children's ids.
func (s *Server) Split(streamARN, shardID string, n int) ([]string, error) {
	if n < 1 {
		return nil, errors.New("ddbstreams: Split needs n >= 1")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.byARN[streamARN]
	if st == nil {
		return nil, fmt.Errorf("ddbstreams: no stream %s", streamARN)
	}
	sh := st.byID[shardID]
	if sh == nil || sh.closed {
		return nil, fmt.Errorf("ddbstreams: no open shard %s", shardID)
	}
	s.closeShard(sh)
	var ids []string
	for _, r := range splitRange(sh.lo, sh.hi, n) {
		ids = append(ids, s.newShard(st, sh.id, r[0], r[1]).id)
	}
	return ids, nil
}

// closeShard sets a shard's EndingSequenceNumber; s.mu is held.
func (s *Server) closeShard(sh *shard) {
	sh.closed = true
	sh.endSeq = sh.startSeq
	if n := len(sh.recs); n > 0 {
		sh.endSeq = sh.recs[n-1].seq
	}
}

// Disable disables a stream (StreamStatus DISABLED) and closes its open
// shards; its records stay readable, as on AWS for 24 hours.
func (s *Server) Disable(streamARN string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.byARN[streamARN]
	if st == nil {
		return fmt.Errorf("ddbstreams: no stream %s", streamARN)
	}
	st.status = types.StreamStatusDisabled
	for _, sh := range st.shards {
		if !sh.closed {
			s.closeShard(sh)
		}
	}
	return nil
}

// Trim drops the records created before t from every shard of a stream,
// as retention does: reading them is a TrimmedDataAccessException.
func (s *Server) Trim(streamARN string, before time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.byARN[streamARN]
	if st == nil {
		return fmt.Errorf("ddbstreams: no stream %s", streamARN)
	}
	cut := before.Unix()
	for _, sh := range st.shards {
		for sh.trimmed < len(sh.recs) && sh.recs[sh.trimmed].created < cut {
			sh.recs[sh.trimmed].json = nil
			sh.trimmed++
		}
	}
	return nil
}

// Shards returns the ids of a stream's shards, in creation order, and
// which are open.
func (s *Server) Shards(streamARN string) (ids []string, open map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	open = map[string]bool{}
	if st := s.byARN[streamARN]; st != nil {
		for _, sh := range st.shards {
			ids = append(ids, sh.id)
			open[sh.id] = !sh.closed
		}
	}
	return ids, open
}
