package mongotest

import (
	"slices"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// FailPoint makes commands fail, as mongod's "failCommand" fail point
// does. It acts after the command was found and authorized and before it
// runs, so a failed getMore leaves its cursor open.
type FailPoint struct {
	// Commands are the names of the commands that fail, e.g. "getMore".
	Commands []string
	// Code is the error code of the failure (ignored with CloseConnection).
	Code int32
	// Message is the errmsg. Default "Failing command via 'failCommand'
	// failpoint", as mongod's.
	Message string
	// Labels are the errorLabels. Nil means mongod's defaults:
	// ResumableChangeStreamError on a change-stream getMore failing with a
	// resumable code (HostUnreachable, NetworkTimeout, ...), and
	// RetryableWriteError on a retryable write (one with txnNumber) failing
	// with a retryable code. A non-nil empty slice sends no labels.
	Labels []string
	// CloseConnection closes the connection instead of answering: the
	// client sees a network error.
	CloseConnection bool
	// Times is how many matching commands fail; 0 means every one until
	// ClearFailPoint or another SetFailPoint.
	Times int
}

// SetFailPoint replaces the fail point.
func (s *Server) SetFailPoint(fp FailPoint) {
	fp.Commands = slices.Clone(fp.Commands)
	if fp.Labels != nil {
		fp.Labels = slices.Clone(fp.Labels)
	}
	s.mu.Lock()
	s.fail = &fp
	s.mu.Unlock()
}

// ClearFailPoint turns the fail point off.
func (s *Server) ClearFailPoint() {
	s.mu.Lock()
	s.fail = nil
	s.mu.Unlock()
}

// FailNextGetMore makes the next getMore fail with code (and labels; none
// given means mongod's default labels, see FailPoint.Labels).
func (s *Server) FailNextGetMore(code int32, labels ...string) {
	fp := FailPoint{Commands: []string{"getMore"}, Code: code, Times: 1}
	if len(labels) > 0 {
		fp.Labels = labels
	}
	s.SetFailPoint(fp)
}

// InjectResumableError makes the next getMore fail with code 6
// HostUnreachable and the ResumableChangeStreamError label, as mongod
// answers when it loses a node: the driver kills the cursor and resumes
// the change stream from its last resume token with a new aggregate.
func (s *Server) InjectResumableError() {
	s.FailNextGetMore(CodeHostUnreachable)
}

// failPointFor returns the fail point if it applies to req, counting it
// down.
func (s *Server) failPointFor(req *request) *FailPoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	fp := s.fail
	if fp == nil || !slices.Contains(fp.Commands, req.name) {
		return nil
	}
	if fp.Times > 0 {
		fp.Times--
		if fp.Times == 0 {
			s.fail = nil
		}
	}
	return fp
}

// err is the failure for req, with mongod's default labels.
func (fp *FailPoint) err(s *Server, req *request) *cmdError {
	msg := fp.Message
	if msg == "" {
		msg = "Failing command via 'failCommand' failpoint"
	}
	e := &cmdError{code: fp.Code, msg: msg, labels: fp.Labels}
	if fp.Labels != nil {
		return e
	}
	switch req.name {
	case "getMore":
		id, _ := docFirst(req.body).Int64OK()
		s.mu.Lock()
		c := s.cursors[id]
		stream := c != nil && c.stream != nil
		s.mu.Unlock()
		if stream && isResumable(fp.Code) {
			e.labels = []string{ResumableChangeStreamError}
		}
	case "insert", "update", "delete":
		if _, err := req.body.LookupErr("txnNumber"); err == nil && isRetryableWrite(fp.Code) {
			e.labels = []string{"RetryableWriteError"}
		}
	}
	return e
}

// cmdConfigureFailPoint is mongod's test command for the "failCommand"
// fail point: {configureFailPoint: "failCommand", mode: "alwaysOn" | "off"
// | {times: n}, data: {failCommands, errorCode, errorLabels,
// closeConnection, errmsg}}, on the admin database.
func cmdConfigureFailPoint(s *Server, _ *conn, req *request) (bson.D, error) {
	if req.db != "admin" {
		return nil, errorf(CodeUnauthorized, "configureFailPoint may only be run against the admin database.")
	}
	if name, _ := docFirst(req.body).StringValueOK(); name != "failCommand" {
		return nil, errorf(codeBadValue, "mongotest: only the failCommand fail point exists, not %s", docFirst(req.body))
	}
	mode := req.body.Lookup("mode")
	var fp FailPoint
	switch m, _ := mode.StringValueOK(); {
	case m == "off":
		s.ClearFailPoint()
		return bson.D{}, nil
	case m == "alwaysOn":
	case mode.Type == bson.TypeEmbeddedDocument:
		d, _ := mode.DocumentOK()
		n, ok := asInt(d.Lookup("times"))
		if !ok || n <= 0 || len(mustElements(d)) != 1 {
			return nil, errorf(codeBadValue, "mongotest: mode must be \"alwaysOn\", \"off\" or {times: n > 0}, not %s", mode)
		}
		fp.Times = int(n)
	default:
		return nil, errorf(codeBadValue, "mongotest: mode must be \"alwaysOn\", \"off\" or {times: n > 0}, not %s", mode)
	}
	data, ok := req.body.Lookup("data").DocumentOK()
	if !ok {
		return nil, errorf(codeFailedToParse, "failCommand needs a data document")
	}
	for _, e := range mustElements(data) {
		v := e.Value()
		switch e.Key() {
		case "failCommands":
			arr, _ := v.ArrayOK()
			names, _ := arr.Values()
			for _, n := range names {
				name, ok := n.StringValueOK()
				if !ok {
					return nil, errorf(codeTypeMismatch, "failCommands must hold strings")
				}
				fp.Commands = append(fp.Commands, name)
			}
		case "errorCode":
			n, ok := asInt(v)
			if !ok {
				return nil, errorf(codeTypeMismatch, "errorCode must be a number")
			}
			fp.Code = int32(n)
		case "errorLabels":
			arr, _ := v.ArrayOK()
			labels, _ := arr.Values()
			fp.Labels = []string{}
			for _, l := range labels {
				label, ok := l.StringValueOK()
				if !ok {
					return nil, errorf(codeTypeMismatch, "errorLabels must hold strings")
				}
				fp.Labels = append(fp.Labels, label)
			}
		case "closeConnection":
			fp.CloseConnection = truthy(v)
		case "errmsg":
			fp.Message, _ = v.StringValueOK()
		default:
			return nil, errorf(codeNotImplemented, "mongotest: failCommand option %s is not supported", e.Key())
		}
	}
	if len(fp.Commands) == 0 || fp.Code == 0 && !fp.CloseConnection {
		return nil, errorf(codeBadValue, "failCommand needs failCommands and errorCode or closeConnection")
	}
	s.SetFailPoint(fp)
	return bson.D{}, nil
}
