package mongotest

import (
	"math/rand/v2"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// maxWireVersion is MongoDB 7.0's.
const maxWireVersion = 21

// handler runs one command. A returned *cmdError becomes the error reply;
// the result gets ok, $clusterTime and operationTime added.
type handler struct {
	run func(s *Server, c *conn, req *request) (bson.D, error)
	// open: allowed before authentication.
	open bool
}

var handlers map[string]handler

// unknownCommand is the Stats name under which commands the server does
// not know are counted (so garbage cannot grow the map).
const unknownCommand = "(unknown)"

func init() {
	hello := handler{run: cmdHello, open: true}
	handlers = map[string]handler{
		"hello":              hello,
		"isMaster":           hello,
		"ismaster":           hello,
		"saslStart":          {run: cmdSaslStart, open: true},
		"saslContinue":       {run: cmdSaslContinue, open: true},
		"ping":               {run: cmdOK, open: true},
		"buildInfo":          {run: cmdBuildInfo, open: true},
		"buildinfo":          {run: cmdBuildInfo, open: true},
		"endSessions":        {run: cmdOK, open: true},
		"logout":             {run: cmdLogout, open: true},
		"insert":             {run: cmdInsert},
		"update":             {run: cmdUpdate},
		"delete":             {run: cmdDelete},
		"find":               {run: cmdFind},
		"count":              {run: cmdCount},
		"aggregate":          {run: cmdAggregate},
		"getMore":            {run: cmdGetMore},
		"killCursors":        {run: cmdKillCursors},
		"create":             {run: cmdCreate},
		"drop":               {run: cmdDrop},
		"dropDatabase":       {run: cmdDropDatabase},
		"listCollections":    {run: cmdListCollections},
		"listDatabases":      {run: cmdListDatabases},
		"configureFailPoint": {run: cmdConfigureFailPoint},
	}
}

// handle runs a request and returns the reply message (nil for a
// moreToCome request) and whether to close the connection.
func (s *Server) handle(c *conn, req *request) (reply []byte, closeConn bool) {
	if _, known := handlers[req.name]; known {
		s.countCommand(req.name)
	} else {
		s.countCommand(unknownCommand)
	}
	doc, closeConn := s.run(c, req)
	if closeConn || req.moreToCome {
		return nil, closeConn
	}
	s.mu.Lock()
	now := s.log.last
	s.mu.Unlock()
	doc = append(doc,
		bson.E{Key: "$clusterTime", Value: bson.D{
			{Key: "clusterTime", Value: now},
			{Key: "signature", Value: bson.D{
				{Key: "hash", Value: bson.Binary{Data: make([]byte, 20)}},
				{Key: "keyId", Value: int64(0)},
			}},
		}},
		bson.E{Key: "operationTime", Value: now})
	raw, err := bson.Marshal(doc)
	if err != nil { // a bug here, not the client's: say so
		raw, _ = bson.Marshal(errorDoc(errorf(codeOperationFailed, "mongotest: encode reply: %v", err)))
	}
	if req.legacy {
		return appendOpReply(nil, req.requestID, raw), false
	}
	return appendMsgReply(nil, req.requestID, raw), false
}

func (s *Server) run(c *conn, req *request) (bson.D, bool) {
	h, ok := handlers[req.name]
	switch {
	case !ok:
		return errorDoc(errorf(CodeCommandNotFound, "no such command: '%s'", req.name)), false
	case req.legacy && !isHello(req.name):
		return errorDoc(errorf(codeUnsupportedOpQueryCommand, "Unsupported OP_QUERY command: %s. The client driver may require an upgrade.", req.name)), false
	}
	if !h.open && !s.authorized(c) {
		return errorDoc(errorf(CodeUnauthorized, "Command %s requires authentication", req.name)), false
	}
	if fp := s.failPointFor(req); fp != nil {
		if fp.CloseConnection {
			return nil, true
		}
		return errorDoc(fp.err(s, req)), false
	}
	res, err := h.run(s, c, req)
	if err != nil {
		return errorDoc(asCmdError(err)), false
	}
	return append(res, bson.E{Key: "ok", Value: 1.0}), false
}

func isHello(name string) bool { return name == "hello" || name == "isMaster" || name == "ismaster" }

func cmdOK(*Server, *conn, *request) (bson.D, error) { return bson.D{}, nil }

func cmdHello(s *Server, c *conn, req *request) (bson.D, error) {
	now := time.Now()
	d := bson.D{}
	if truthy(req.body.Lookup("helloOk")) {
		d = append(d, bson.E{Key: "helloOk", Value: true})
	}
	primary := "isWritablePrimary"
	if req.name != "hello" {
		primary = "ismaster"
	}
	d = append(d,
		bson.E{Key: "hosts", Value: bson.A{s.advertise}},
		bson.E{Key: "setName", Value: s.opts.ReplicaSet},
		bson.E{Key: "setVersion", Value: int32(1)},
		bson.E{Key: primary, Value: true},
		bson.E{Key: "secondary", Value: false},
		bson.E{Key: "primary", Value: s.advertise},
		bson.E{Key: "me", Value: s.advertise},
		bson.E{Key: "electionId", Value: s.electionID},
		bson.E{Key: "maxBsonObjectSize", Value: int32(MaxDocumentSize)},
		bson.E{Key: "maxMessageSizeBytes", Value: int32(MaxMessageSize)},
		bson.E{Key: "maxWriteBatchSize", Value: int32(100000)},
		bson.E{Key: "localTime", Value: bson.NewDateTimeFromTime(now)},
		bson.E{Key: "logicalSessionTimeoutMinutes", Value: int32(30)},
		bson.E{Key: "connectionId", Value: c.id},
		bson.E{Key: "minWireVersion", Value: int32(0)},
		bson.E{Key: "maxWireVersion", Value: int32(maxWireVersion)},
		bson.E{Key: "readOnly", Value: false},
	)
	if userDB, ok := req.body.Lookup("saslSupportedMechs").StringValueOK(); ok {
		if mechs := s.mechanismsFor(userDB); mechs != nil {
			d = append(d, bson.E{Key: "saslSupportedMechs", Value: mechs})
		}
	}
	if spec, ok := req.body.Lookup("speculativeAuthenticate").DocumentOK(); ok {
		// A failed speculative attempt is left out of the reply; the driver
		// then authenticates the ordinary way and gets the real error.
		db, _ := spec.Lookup("db").StringValueOK()
		if res, err := c.saslStart(s, db, spec); err == nil {
			d = append(d, bson.E{Key: "speculativeAuthenticate", Value: res})
		}
	}
	return d, nil
}

func cmdBuildInfo(*Server, *conn, *request) (bson.D, error) {
	return bson.D{
		{Key: "version", Value: "7.0.0"},
		{Key: "gitVersion", Value: "mongotest"},
		{Key: "versionArray", Value: bson.A{int32(7), int32(0), int32(0), int32(0)}},
		{Key: "bits", Value: int32(64)},
		{Key: "maxBsonObjectSize", Value: int32(MaxDocumentSize)},
		{Key: "storageEngines", Value: bson.A{"mongotest"}},
	}, nil
}

// cursor is an open cursor: a change stream, or the rest of a find or
// aggregate result. Guarded by Server.mu.
type cursor struct {
	id       int64
	ns       string
	stream   *stream    // change stream, or nil
	docs     []bson.Raw // what a find/aggregate cursor still has
	lastUsed time.Time
	busy     bool // a getMore is running
	killed   bool
}

// cursorIdle is how long an unused cursor lives, as mongod's default.
const cursorIdle = 10 * time.Minute

// newCursor registers c under a new id. Callers hold s.mu.
func (s *Server) newCursor(c *cursor) int64 {
	now := time.Now()
	for id, old := range s.cursors {
		if !old.busy && now.Sub(old.lastUsed) > cursorIdle {
			delete(s.cursors, id)
		}
	}
	for c.id == 0 || s.cursors[c.id] != nil {
		c.id = rand.Int64N(1<<62) + 1
	}
	c.lastUsed = now
	s.cursors[c.id] = c
	return c.id
}

func (s *Server) killCursor(c *cursor) {
	c.killed = true
	delete(s.cursors, c.id)
}

func cmdAggregate(s *Server, _ *conn, req *request) (bson.D, error) {
	arr, ok := req.body.Lookup("pipeline").ArrayOK()
	if !ok {
		return nil, errorf(codeFailedToParse, "'pipeline' option must be specified as an array")
	}
	vals, _ := arr.Values()
	stages := make([]bson.Raw, 0, len(vals))
	for _, v := range vals {
		d, ok := v.DocumentOK()
		if !ok {
			return nil, errorf(codeTypeMismatch, "Each element of the 'pipeline' array must be an object")
		}
		stages = append(stages, d)
	}
	if truthy(req.body.Lookup("explain")) {
		return nil, errorf(codeNotImplemented, "mongotest: explain is not supported")
	}
	cur, ok := req.body.Lookup("cursor").DocumentOK()
	if !ok {
		return nil, errorf(codeFailedToParse, "The 'cursor' option is required, except for aggregate with the explain argument")
	}
	batch, hasBatch, err := lookupInt(cur, "batchSize")
	if err != nil {
		return nil, err
	}
	if !hasBatch {
		batch = defaultBatch
	}
	if batch < 0 {
		return nil, errorf(codeBadValue, "batchSize must not be negative")
	}
	if err := checkDBName(req.db); err != nil {
		return nil, err
	}
	target := docFirst(req.body)
	if len(stages) > 0 {
		if spec, ok := stages[0].Lookup("$changeStream").DocumentOK(); ok {
			return s.openStream(req, target, spec, stages[1:], int(batch))
		}
	}
	name, ok := target.StringValueOK()
	if !ok {
		return nil, errorf(codeNotImplemented, "mongotest: database-level aggregate is only supported for $changeStream")
	}
	if err := checkCollName(name); err != nil {
		return nil, err
	}
	return s.aggregateColl(req, name, stages, int(batch))
}

func cmdGetMore(s *Server, _ *conn, req *request) (bson.D, error) {
	idv := docFirst(req.body)
	id, ok := idv.Int64OK()
	if !ok {
		return nil, errorf(codeTypeMismatch, "BSON field 'getMore.getMore' is the wrong type '%s', expected type 'long'", idv.Type)
	}
	coll, ok := req.body.Lookup("collection").StringValueOK()
	if !ok {
		return nil, errorf(codeFailedToParse, "BSON field 'getMore.collection' is missing but a required field")
	}
	batch, hasBatch, err := lookupInt(req.body, "batchSize")
	if err != nil {
		return nil, err
	}
	if !hasBatch || batch <= 0 {
		batch = -1
	}
	wait := defaultAwait
	if ms, ok, err := lookupInt(req.body, "maxTimeMS"); err != nil {
		return nil, err
	} else if ok {
		if ms < 0 {
			return nil, errorf(codeBadValue, "maxTimeMS must not be negative")
		}
		wait = time.Duration(ms) * time.Millisecond
	}
	s.mu.Lock()
	cur := s.cursors[id]
	if cur == nil {
		s.mu.Unlock()
		return nil, errorf(CodeCursorNotFound, "cursor id %d not found", id)
	}
	if cur.ns != req.db+"."+coll && !strings.HasPrefix(cur.ns, req.db+".$cmd.") {
		s.mu.Unlock()
		return nil, errorf(CodeUnauthorized, "Requested getMore on namespace '%s.%s', but cursor belongs to a different namespace %s", req.db, coll, cur.ns)
	}
	if cur.busy {
		s.mu.Unlock()
		return nil, errorf(codeOperationFailed, "cursor id %d is already in use", id)
	}
	if cur.stream == nil {
		defer s.mu.Unlock()
		next, rest := splitBatch(cur.docs, int(batch))
		cur.docs, cur.lastUsed = rest, time.Now()
		if len(rest) == 0 {
			s.killCursor(cur)
			id = 0
		}
		return cursorReply("nextBatch", next, id, cur.ns, pos{}), nil
	}
	cur.busy = true
	s.mu.Unlock()
	return s.streamGetMore(cur, int(batch), wait)
}

func cmdKillCursors(s *Server, _ *conn, req *request) (bson.D, error) {
	arr, ok := req.body.Lookup("cursors").ArrayOK()
	if !ok {
		return nil, errorf(codeFailedToParse, "BSON field 'killCursors.cursors' is missing but a required field")
	}
	vals, _ := arr.Values()
	killed, notFound := bson.A{}, bson.A{}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range vals {
		id, ok := v.Int64OK()
		if !ok {
			return nil, errorf(codeTypeMismatch, "cursor ids must be longs")
		}
		if c := s.cursors[id]; c != nil {
			s.killCursor(c)
			killed = append(killed, id)
		} else {
			notFound = append(notFound, id)
		}
	}
	return bson.D{
		{Key: "cursorsKilled", Value: killed},
		{Key: "cursorsNotFound", Value: notFound},
		{Key: "cursorsAlive", Value: bson.A{}},
		{Key: "cursorsUnknown", Value: bson.A{}},
	}, nil
}
