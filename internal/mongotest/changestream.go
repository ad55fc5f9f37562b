package mongotest

import (
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// The event log plays the oplog: one entry per write, each with its own
// cluster time. Change streams are cursors over it; a stream's position is
// a point between entries, and a resume token is that point written out.

// entry is one logged write.
type entry struct {
	ts   bson.Timestamp
	wall time.Time
	op   string // insert, update, replace, delete, drop, dropDatabase, noop
	db   string
	coll string
	id   bson.RawValue // the document's _id (document operations)
	doc  bson.Raw      // insert, replace: the document written
	// update: what changed.
	updated bson.Raw
	removed []string
}

// Kinds of position within one cluster time, in order: before the entry,
// after its event, after the invalidate it causes, after all of it.
const (
	kindStart      byte = 0
	kindEvent      byte = 1
	kindInvalidate byte = 2
	kindAfter      byte = 3 // a high-water mark
)

// pos is a stream position: everything up to and including (ts, kind) was
// seen.
type pos struct {
	ts   bson.Timestamp
	kind byte
}

func (p pos) less(q pos) bool {
	if p.ts.T != q.ts.T {
		return p.ts.T < q.ts.T
	}
	if p.ts.I != q.ts.I {
		return p.ts.I < q.ts.I
	}
	return p.kind < q.kind
}

// tokenPrefix starts every resume token, as 0x82 starts mongod's.
const tokenPrefix = "82"

// token is the resume token's _data: fixed-length upper-case hex of the
// position, so tokens compare as strings in stream order.
func (p pos) token() string {
	return fmt.Sprintf("%s%08X%08X%02X", tokenPrefix, p.ts.T, p.ts.I, p.kind)
}

func (p pos) tokenDoc() bson.D { return bson.D{{Key: "_data", Value: p.token()}} }

func parseToken(v bson.RawValue, field string) (pos, error) {
	d, ok := v.DocumentOK()
	if !ok {
		return pos{}, errorf(codeTypeMismatch, "BSON field '$changeStream.%s' is the wrong type '%s', expected type 'object'", field, v.Type)
	}
	data, ok := d.Lookup("_data").StringValueOK()
	if !ok || len(data) != 20 || !strings.HasPrefix(data, tokenPrefix) {
		return pos{}, errorf(codeFailedToParse, "%s: resume token %s was not made by mongotest", field, d)
	}
	b, err := hex.DecodeString(data[2:])
	if err != nil || b[8] > kindAfter {
		return pos{}, errorf(codeFailedToParse, "%s: malformed resume token %s", field, d)
	}
	ts := bson.Timestamp{T: uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]),
		I: uint32(b[4])<<24 | uint32(b[5])<<16 | uint32(b[6])<<8 | uint32(b[7])}
	return pos{ts: ts, kind: b[8]}, nil
}

// eventLog is the log, with what trimming it lost. Guarded by Server.mu.
type eventLog struct {
	entries []*entry
	last    bson.Timestamp // the latest cluster time handed out
	// Every entry after floor is still retained; trimmed says floor means
	// something (before any trimming nothing was lost).
	floor   bson.Timestamp
	trimmed bool
	// changed is closed and replaced at every append, waking getMores.
	changed chan struct{}
}

func (l *eventLog) init(now time.Time) {
	l.last = bson.Timestamp{T: uint32(now.Unix())}
	l.changed = make(chan struct{})
}

// next hands out a new cluster time: the clock's second, with an
// increment that makes it unique and increasing.
func (l *eventLog) next(now time.Time) bson.Timestamp {
	if sec := uint32(now.Unix()); sec > l.last.T {
		l.last = bson.Timestamp{T: sec, I: 1}
	} else {
		l.last.I++
	}
	return l.last
}

// appendEntry logs a write at a new cluster time and wakes waiting
// getMores. Callers hold s.mu.
func (s *Server) appendEntry(e *entry) {
	now := s.opts.Now()
	e.ts = s.log.next(now)
	e.wall = now
	s.log.entries = append(s.log.entries, e)
	s.trim(now)
	close(s.log.changed)
	s.log.changed = make(chan struct{})
}

// trim drops entries beyond Options.MaxEvents or older than
// Options.Retention. Callers hold s.mu.
func (s *Server) trim(now time.Time) {
	l := &s.log
	drop := 0
	if s.opts.MaxEvents > 0 && len(l.entries) > s.opts.MaxEvents {
		drop = len(l.entries) - s.opts.MaxEvents
	}
	if s.opts.Retention > 0 {
		cutoff := now.Add(-s.opts.Retention).Unix()
		for drop < len(l.entries) && int64(l.entries[drop].ts.T) < cutoff {
			drop++
		}
	}
	s.dropEntries(drop)
}

func (s *Server) dropEntries(n int) {
	l := &s.log
	if n == 0 {
		return
	}
	l.floor, l.trimmed = l.entries[n-1].ts, true
	k := copy(l.entries, l.entries[n:])
	clear(l.entries[k:])
	l.entries = l.entries[:k]
}

// lost reports whether events after p were trimmed.
func (l *eventLog) lost(p pos) bool {
	return l.trimmed && p.less(pos{ts: l.floor, kind: kindEvent})
}

func errHistoryLost() error {
	return errorf(CodeChangeStreamHistoryLost,
		"Resume of change stream was not possible, as the resume point may no longer be in the oplog.")
}

// TrimHistory drops every retained change event, as an oplog rolling over
// would. It first writes a no-op entry, so that every stream position and
// resume token handed out so far is now too old: the next getMore of every
// open stream, and any aggregate resuming from an older token or
// operation time, fails with code 286 ChangeStreamHistoryLost. Streams
// opened afterwards work. It returns the cluster time of the no-op; a
// stream may start at any later time.
func (s *Server) TrimHistory() bson.Timestamp {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.appendEntry(&entry{op: "noop"})
	ts := s.log.last
	s.dropEntries(len(s.log.entries))
	return ts
}

// OldestRetained returns the cluster time of the oldest change event still
// in the log (after applying Options.Retention at the current clock), and
// false when the log holds none. startAtOperationTime at that time reads
// every retained event: what TRIM_HORIZON means.
func (s *Server) OldestRetained() (bson.Timestamp, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.trim(s.opts.Now())
	for _, e := range s.log.entries {
		if e.op != "noop" {
			return e.ts, true
		}
	}
	return bson.Timestamp{}, false
}

// ClusterTime returns the latest cluster time handed out: the
// operationTime of a reply sent now.
func (s *Server) ClusterTime() bson.Timestamp {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.last
}

// stream is the state of a change-stream cursor.
type stream struct {
	db, coll string // coll "" is a whole-database stream; db "" the cluster
	lookup   bool   // fullDocument: updateLookup
	matches  []bson.Raw
	pos      pos
}

// sees reports whether the stream reports e's event.
func (st *stream) sees(e *entry) bool {
	switch {
	case e.op == "noop":
		return false
	case st.db == "": // cluster
		return !internalDB(e.db) && !strings.HasPrefix(e.coll, "system.")
	case st.coll == "":
		return e.db == st.db && !strings.HasPrefix(e.coll, "system.")
	default:
		return e.db == st.db && e.coll == st.coll && e.op != "dropDatabase"
	}
}

// invalidatedBy reports whether e ends the stream (after its event).
func (st *stream) invalidatedBy(e *entry) bool {
	switch {
	case st.db == "":
		return false
	case st.coll == "":
		return e.op == "dropDatabase" && e.db == st.db
	default:
		return e.op == "drop" && e.db == st.db && e.coll == st.coll
	}
}

func internalDB(db string) bool { return db == "admin" || db == "config" || db == "local" }

// maxBatchBytes bounds the events in one reply, as mongod's 16 MB.
const maxBatchBytes = MaxDocumentSize

// scan returns the next events after the stream's position, up to limit
// (negative: no count limit), and advances the position over what it read.
// invalidated means the batch ends with an invalidate event and the cursor
// is finished. Callers hold s.mu.
func (s *Server) scan(st *stream, limit int) (batch []bson.Raw, invalidated bool, err error) {
	s.trim(s.opts.Now())
	if s.log.lost(st.pos) {
		return nil, false, errHistoryLost()
	}
	entries := s.log.entries
	i := sort.Search(len(entries), func(i int) bool { return !entries[i].ts.Before(st.pos.ts) })
	size := 0
	full := func(ev bson.Raw) bool {
		return limit >= 0 && len(batch) >= limit || len(batch) > 0 && size+len(ev) > maxBatchBytes
	}
	for ; i < len(entries); i++ {
		e := entries[i]
		emitted := false
		if st.pos.less(pos{e.ts, kindEvent}) && st.sees(e) {
			ev, err := s.render(st, e)
			if err != nil {
				return nil, false, err
			}
			ok, err := st.match(ev)
			if err != nil {
				return nil, false, err
			}
			if ok {
				if full(ev) {
					return batch, false, nil
				}
				batch, size, emitted = append(batch, ev), size+len(ev), true
				st.pos = pos{e.ts, kindEvent}
			}
		}
		if st.pos.less(pos{e.ts, kindInvalidate}) && st.invalidatedBy(e) {
			ev := invalidateEvent(e)
			if full(ev) {
				return batch, false, nil
			}
			st.pos = pos{e.ts, kindInvalidate}
			return append(batch, ev), true, nil
		}
		if !emitted {
			st.pos = pos{e.ts, kindAfter}
		}
	}
	return batch, false, nil
}

func (st *stream) match(ev bson.Raw) (bool, error) {
	for _, f := range st.matches {
		ok, err := matches(ev, f)
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

// render builds the change event for e, in mongod's field order.
func (s *Server) render(st *stream, e *entry) (bson.Raw, error) {
	d := bson.D{
		{Key: "_id", Value: pos{e.ts, kindEvent}.tokenDoc()},
		{Key: "operationType", Value: e.op},
		{Key: "clusterTime", Value: e.ts},
		{Key: "wallTime", Value: bson.NewDateTimeFromTime(e.wall)},
	}
	ns := bson.D{{Key: "db", Value: e.db}, {Key: "coll", Value: e.coll}}
	key := bson.D{{Key: "_id", Value: e.id}}
	switch e.op {
	case "insert", "replace":
		d = append(d, bson.E{Key: "fullDocument", Value: e.doc}, bson.E{Key: "ns", Value: ns}, bson.E{Key: "documentKey", Value: key})
	case "update":
		d = append(d, bson.E{Key: "ns", Value: ns}, bson.E{Key: "documentKey", Value: key},
			bson.E{Key: "updateDescription", Value: bson.D{
				{Key: "updatedFields", Value: e.updated},
				{Key: "removedFields", Value: append([]string{}, e.removed...)},
				{Key: "truncatedArrays", Value: bson.A{}},
			}})
		if st.lookup {
			var full any // null when the document is gone
			if doc, ok := s.findByID(e.db, e.coll, e.id); ok {
				full = doc
			}
			d = append(d, bson.E{Key: "fullDocument", Value: full})
		}
	case "delete":
		d = append(d, bson.E{Key: "ns", Value: ns}, bson.E{Key: "documentKey", Value: key})
	case "drop":
		d = append(d, bson.E{Key: "ns", Value: ns})
	case "dropDatabase":
		d = append(d, bson.E{Key: "ns", Value: bson.D{{Key: "db", Value: e.db}}})
	}
	raw, err := bson.Marshal(d)
	if err != nil {
		return nil, errorf(codeOperationFailed, "mongotest: render event: %v", err)
	}
	if len(raw) > MaxDocumentSize {
		return nil, errorf(codeBSONObjectTooLarge, "BSONObjectTooLarge: change event of %d bytes exceeds the maximum of %d", len(raw), MaxDocumentSize)
	}
	return raw, nil
}

func invalidateEvent(e *entry) bson.Raw {
	raw, _ := bson.Marshal(bson.D{
		{Key: "_id", Value: pos{e.ts, kindInvalidate}.tokenDoc()},
		{Key: "operationType", Value: "invalidate"},
		{Key: "clusterTime", Value: e.ts},
		{Key: "wallTime", Value: bson.NewDateTimeFromTime(e.wall)},
	})
	return raw
}

// openStream runs an aggregate whose first stage is $changeStream.
func (s *Server) openStream(req *request, target bson.RawValue, spec bson.Raw, rest []bson.Raw, batchSize int) (bson.D, error) {
	st := &stream{db: req.db}
	var (
		resumeAfter, startAfter, startAt bson.RawValue
		cluster                          bool
	)
	elems, _ := spec.Elements()
	for _, e := range elems {
		v := e.Value()
		switch k := e.Key(); k {
		case "fullDocument":
			mode, _ := v.StringValueOK()
			switch mode {
			case "default":
			case "updateLookup":
				st.lookup = true
			case "whenAvailable", "required":
				return nil, errorf(codeNotImplemented, "mongotest: fullDocument %q (post-images) is not supported", mode)
			default:
				return nil, errorf(codeBadValue, "unrecognized value for fullDocument: %s", v)
			}
		case "fullDocumentBeforeChange":
			if mode, _ := v.StringValueOK(); mode != "off" {
				return nil, errorf(codeNotImplemented, "mongotest: fullDocumentBeforeChange %s (pre-images) is not supported", v)
			}
		case "resumeAfter":
			resumeAfter = v
		case "startAfter":
			startAfter = v
		case "startAtOperationTime":
			if v.Type != bson.TypeTimestamp {
				return nil, errorf(codeTypeMismatch, "BSON field '$changeStream.startAtOperationTime' is the wrong type '%s', expected type 'timestamp'", v.Type)
			}
			startAt = v
		case "allChangesForCluster":
			cluster = truthy(v)
		case "showExpandedEvents":
			if truthy(v) {
				return nil, errorf(codeNotImplemented, "mongotest: showExpandedEvents is not supported")
			}
		default:
			return nil, errorf(codeFailedToParse, "BSON field '$changeStream.%s' is an unknown field.", k)
		}
	}
	n := 0
	for _, v := range []bson.RawValue{resumeAfter, startAfter, startAt} {
		if v.Type != 0 {
			n++
		}
	}
	if n > 1 {
		return nil, errorf(codeMultipleResumeOptions, "Only one type of resume option is allowed, but multiple were found.")
	}

	// The namespace.
	coll, isColl := target.StringValueOK()
	switch {
	case cluster && (isColl || req.db != "admin"):
		return nil, errorf(codeInvalidNamespace, "A change stream with allChangesForCluster must be opened on the admin database with {aggregate: 1}")
	case cluster:
		st.db = ""
	case internalDB(req.db):
		return nil, errorf(codeInvalidNamespace, "$changeStream may not be opened on the internal %s database", req.db)
	case isColl:
		if err := checkCollName(coll); err != nil {
			return nil, err
		}
		st.coll = coll
	}
	ns := req.db + ".$cmd.aggregate"
	if isColl {
		ns = req.db + "." + coll
	}

	for _, stage := range rest {
		f, ok := stage.Lookup("$match").DocumentOK()
		if !ok || len(mustElements(stage)) != 1 {
			return nil, errorf(codeNotImplemented, "mongotest: only $match may follow $changeStream, not %s", stage)
		}
		if _, err := matches(bson.Raw{5, 0, 0, 0, 0}, f); err != nil {
			return nil, err
		}
		st.matches = append(st.matches, f)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case resumeAfter.Type != 0:
		p, err := parseToken(resumeAfter, "resumeAfter")
		if err != nil {
			return nil, err
		}
		if p.kind == kindInvalidate {
			return nil, errorf(CodeInvalidResumeToken, "Attempting to resume a change stream using 'resumeAfter' is not allowed from an invalidate notification.")
		}
		st.pos = p
	case startAfter.Type != 0:
		p, err := parseToken(startAfter, "startAfter")
		if err != nil {
			return nil, err
		}
		if p.kind == kindInvalidate {
			// Nothing else happened at that time; a high-water mark says
			// the same and, unlike an invalidate token, resumeAfter takes
			// it when it comes back as postBatchResumeToken.
			p.kind = kindAfter
		}
		st.pos = p
	case startAt.Type != 0:
		t, i, _ := startAt.TimestampOK()
		st.pos = pos{bson.Timestamp{T: t, I: i}, kindStart}
	default:
		st.pos = pos{s.log.last, kindAfter}
	}
	batch, invalidated, err := s.scan(st, batchSize)
	if err != nil {
		return nil, err
	}
	var id int64
	if !invalidated {
		id = s.newCursor(&cursor{ns: ns, stream: st})
	}
	return cursorReply("firstBatch", batch, id, ns, st.pos), nil
}

func mustElements(d bson.Raw) []bson.RawElement {
	e, _ := d.Elements()
	return e
}

// cursorReply is {cursor: {<batchField>, postBatchResumeToken, id, ns}}.
// A zero pbrt (find cursors) is left out.
func cursorReply(batchField string, batch []bson.Raw, id int64, ns string, pbrt pos) bson.D {
	if batch == nil {
		batch = []bson.Raw{}
	}
	c := bson.D{{Key: batchField, Value: batch}}
	if pbrt != (pos{}) {
		c = append(c, bson.E{Key: "postBatchResumeToken", Value: pbrt.tokenDoc()})
	}
	c = append(c, bson.E{Key: "id", Value: id}, bson.E{Key: "ns", Value: ns})
	return bson.D{{Key: "cursor", Value: c}}
}

// defaultAwait is how long a change-stream getMore waits for events when
// the client sends no maxTimeMS, as mongod's default for awaitData cursors.
const defaultAwait = time.Second

// streamGetMore waits for events on a change-stream cursor. cur is marked
// busy by the caller, who holds no lock.
func (s *Server) streamGetMore(cur *cursor, batchSize int, wait time.Duration) (bson.D, error) {
	deadline := time.Now().Add(wait)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		s.mu.Lock()
		if cur.killed {
			s.mu.Unlock()
			return nil, errorf(237, "cursor id %d was killed", cur.id)
		}
		batch, invalidated, err := s.scan(cur.stream, batchSize)
		remaining := time.Until(deadline)
		if err != nil || len(batch) > 0 || invalidated || remaining <= 0 {
			defer s.mu.Unlock()
			cur.busy = false
			cur.lastUsed = time.Now()
			if err != nil {
				s.killCursor(cur)
				return nil, err
			}
			id := cur.id
			if invalidated {
				s.killCursor(cur)
				id = 0
			}
			return cursorReply("nextBatch", batch, id, cur.ns, cur.stream.pos), nil
		}
		changed := s.log.changed
		s.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(remaining)
		} else {
			timer.Reset(remaining)
		}
		select {
		case <-changed:
			// Timers since Go 1.23 need no draining before Reset.
			timer.Stop()
		case <-timer.C:
		case <-s.done:
			s.mu.Lock()
			cur.busy = false
			s.mu.Unlock()
			return nil, errorf(91, "The server is in quiesce mode and will shut down")
		}
	}
}
