package mongotest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"
)

// Limits, as mongod's (hello reports them to the driver).
const (
	// MaxMessageSize is the largest wire message accepted; a longer one
	// closes the connection.
	MaxMessageSize = 48_000_000
	// MaxDocumentSize is the largest document stored or returned.
	MaxDocumentSize = 16 * 1024 * 1024
	// maxDepth bounds the nesting of documents and arrays in a request.
	maxDepth = 200
)

// Opcodes. OP_QUERY is declared here because the driver's constant is
// deprecated (it only sends OP_QUERY for the first hello).
const (
	opReply      = wiremessage.OpReply
	opQuery      = wiremessage.OpCode(2004)
	opCompressed = wiremessage.OpCompressed
	opMsg        = wiremessage.OpMsg
)

// OP_MSG flag bits; bits 0-15 are "required": a receiver must reject a
// message with one it does not know.
const (
	flagChecksumPresent = wiremessage.ChecksumPresent
	flagMoreToCome      = wiremessage.MoreToCome
	flagRequiredMask    = 0xffff
)

var errTooManyFiles = syscall.EMFILE

// request is one parsed client message.
type request struct {
	requestID int32
	legacy    bool // OP_QUERY: answer with OP_REPLY
	// moreToCome: the client expects no reply (unacknowledged write).
	moreToCome bool
	// body is the command document; its first key names the command.
	body bson.Raw
	// seqs are OP_MSG document-sequence sections by identifier
	// ("documents", "updates", "deletes").
	seqs map[string][]bson.Raw
	name string // command name
	db   string // $db, or the database of an OP_QUERY's "<db>.$cmd"
}

// readMessage reads one wire message: the length under the idle deadline,
// the rest under the I/O deadline.
func readMessage(nc net.Conn, idle, ioTimeout time.Duration) ([]byte, error) {
	var hdr [4]byte
	if err := nc.SetReadDeadline(time.Now().Add(idle)); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(nc, hdr[:]); err != nil {
		return nil, err
	}
	n := int32(binary.LittleEndian.Uint32(hdr[:]))
	if n < 16 || n > MaxMessageSize {
		return nil, fmt.Errorf("message length %d outside [16, %d]", n, MaxMessageSize)
	}
	if err := nc.SetReadDeadline(time.Now().Add(ioTimeout)); err != nil {
		return nil, err
	}
	msg := make([]byte, n)
	copy(msg, hdr[:])
	if _, err := io.ReadFull(nc, msg[4:]); err != nil {
		return nil, err
	}
	return msg, nil
}

// isClosedConn reports errors that just mean the peer went away or the
// connection was closed here; they are not worth a log line.
func isClosedConn(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.As(err, &ne) && ne.Timeout()
}

// parseMessage parses a complete wire message. It never panics: malformed
// input gives an error, on which the caller closes the connection, as
// mongod does.
func parseMessage(msg []byte) (*request, error) {
	length, reqID, _, op, rem, ok := wiremessage.ReadHeader(msg)
	if !ok || int(length) != len(msg) {
		return nil, errors.New("bad message header")
	}
	var req *request
	var err error
	switch op {
	case opMsg:
		req, err = parseOpMsg(msg, rem)
	case opQuery:
		req, err = parseOpQuery(rem)
	case opCompressed:
		return nil, errors.New("OP_COMPRESSED but no compressor was negotiated")
	default:
		return nil, fmt.Errorf("unsupported opcode %d", op)
	}
	if err != nil {
		return nil, err
	}
	req.requestID = reqID
	return req, nil
}

func parseOpMsg(msg, rem []byte) (*request, error) {
	flags, rem, ok := wiremessage.ReadMsgFlags(rem)
	if !ok {
		return nil, errors.New("OP_MSG: short flags")
	}
	if unknown := uint32(flags) & flagRequiredMask &^ uint32(flagChecksumPresent|flagMoreToCome); unknown != 0 {
		return nil, fmt.Errorf("OP_MSG: unknown required flag bits %#x", unknown)
	}
	if flags&flagChecksumPresent != 0 {
		if len(rem) < 4 {
			return nil, errors.New("OP_MSG: short checksum")
		}
		want := binary.LittleEndian.Uint32(rem[len(rem)-4:])
		if got := crc32.Checksum(msg[:len(msg)-4], crc32.MakeTable(crc32.Castagnoli)); got != want {
			return nil, errors.New("OP_MSG: checksum mismatch")
		}
		rem = rem[:len(rem)-4]
	}
	req := &request{moreToCome: flags&flagMoreToCome != 0}
	for len(rem) > 0 {
		var stype wiremessage.SectionType
		stype, rem, _ = wiremessage.ReadMsgSectionType(rem)
		switch stype {
		case wiremessage.SingleDocument:
			var doc bsoncore.Document
			doc, rem, ok = wiremessage.ReadMsgSectionSingleDocument(rem)
			if !ok {
				return nil, errors.New("OP_MSG: short body section")
			}
			if req.body != nil {
				return nil, errors.New("OP_MSG: two body sections")
			}
			if err := validateDoc(doc); err != nil {
				return nil, fmt.Errorf("OP_MSG body: %w", err)
			}
			req.body = bson.Raw(doc)
		case wiremessage.DocumentSequence:
			var id string
			var docs []bsoncore.Document
			id, docs, rem, ok = wiremessage.ReadMsgSectionDocumentSequence(rem)
			if !ok {
				return nil, errors.New("OP_MSG: malformed document sequence")
			}
			if req.seqs == nil {
				req.seqs = map[string][]bson.Raw{}
			}
			if _, dup := req.seqs[id]; dup {
				return nil, fmt.Errorf("OP_MSG: two document sequences %q", id)
			}
			seq := make([]bson.Raw, 0, len(docs))
			for _, d := range docs {
				if err := validateDoc(d); err != nil {
					return nil, fmt.Errorf("OP_MSG sequence %q: %w", id, err)
				}
				seq = append(seq, bson.Raw(d))
			}
			req.seqs[id] = seq
		default:
			return nil, fmt.Errorf("OP_MSG: unknown section kind %d", stype)
		}
	}
	if req.body == nil {
		return nil, errors.New("OP_MSG: no body section")
	}
	first, err := bsoncore.Document(req.body).IndexErr(0)
	if err != nil {
		return nil, errors.New("OP_MSG: empty command document")
	}
	req.name = first.Key()
	db, ok := req.body.Lookup("$db").StringValueOK()
	if !ok || db == "" {
		return nil, errors.New("OP_MSG: no $db")
	}
	req.db = db
	return req, nil
}

// parseOpQuery accepts only commands (a query on "<db>.$cmd"), which is all
// a current driver sends with OP_QUERY.
func parseOpQuery(rem []byte) (*request, error) {
	if len(rem) < 4 {
		return nil, errors.New("OP_QUERY: short flags")
	}
	rem = rem[4:]
	i := strings.IndexByte(string(rem), 0)
	if i < 0 {
		return nil, errors.New("OP_QUERY: unterminated collection name")
	}
	ns := string(rem[:i])
	rem = rem[i+1:]
	db, ok := strings.CutSuffix(ns, ".$cmd")
	if !ok || db == "" {
		return nil, fmt.Errorf("OP_QUERY: only commands are supported, not a query on %q", ns)
	}
	if len(rem) < 8 {
		return nil, errors.New("OP_QUERY: short skip/limit")
	}
	rem = rem[8:]
	doc, rest, ok := bsoncore.ReadDocument(rem)
	if !ok {
		return nil, errors.New("OP_QUERY: short query document")
	}
	if err := validateDoc(doc); err != nil {
		return nil, fmt.Errorf("OP_QUERY query: %w", err)
	}
	if len(rest) > 0 { // returnFieldsSelector
		sel, rest2, ok := bsoncore.ReadDocument(rest)
		if !ok || len(rest2) > 0 || validateDoc(sel) != nil {
			return nil, errors.New("OP_QUERY: malformed returnFieldsSelector")
		}
	}
	body := bson.Raw(doc)
	// A read preference wraps the command as {$query: cmd, $readPreference}.
	if q, ok := body.Lookup("$query").DocumentOK(); ok {
		body = q
	}
	first, err := bsoncore.Document(body).IndexErr(0)
	if err != nil {
		return nil, errors.New("OP_QUERY: empty command document")
	}
	return &request{legacy: true, body: body, name: first.Key(), db: db}, nil
}

// validateDoc checks that d is well-formed BSON all the way down and
// within maxDepth, so later lookups cannot misread it. Sizes are checked
// where documents are stored, with mongod's errors (the message size
// bounds them here).
func validateDoc(d []byte) error {
	return validateDepth(d, 0)
}

func validateDepth(d []byte, depth int) error {
	if depth > maxDepth {
		return errors.New("document nested too deeply")
	}
	doc := bsoncore.Document(d)
	if l, _, ok := bsoncore.ReadLength(d); !ok || int(l) != len(d) {
		return errors.New("document length does not match its bytes")
	}
	if err := doc.Validate(); err != nil {
		return err
	}
	elems, err := doc.Elements()
	if err != nil {
		return err
	}
	for _, e := range elems {
		v := e.Value()
		switch v.Type {
		case bsoncore.TypeEmbeddedDocument, bsoncore.TypeArray:
			if err := validateDepth(v.Data, depth+1); err != nil {
				return err
			}
		case bsoncore.TypeCodeWithScope:
			_, scope, ok := v.CodeWithScopeOK()
			if !ok {
				return errors.New("malformed code with scope")
			}
			if err := validateDepth(scope, depth+1); err != nil {
				return err
			}
		case bsoncore.TypeString, bsoncore.TypeSymbol, bsoncore.TypeJavaScript:
			// Validate already checked the length prefix and terminator.
		}
	}
	return nil
}

// appendMsgReply appends an OP_MSG reply carrying doc.
func appendMsgReply(dst []byte, responseTo int32, doc []byte) []byte {
	idx, dst := wiremessage.AppendHeaderStart(dst, wiremessage.NextRequestID(), responseTo, opMsg)
	dst = wiremessage.AppendMsgFlags(dst, 0)
	dst = wiremessage.AppendMsgSectionType(dst, wiremessage.SingleDocument)
	dst = append(dst, doc...)
	return bsoncore.UpdateLength(dst, idx, int32(len(dst[idx:])))
}

// appendOpReply appends an OP_REPLY (the answer to OP_QUERY) carrying doc.
func appendOpReply(dst []byte, responseTo int32, doc []byte) []byte {
	idx, dst := wiremessage.AppendHeaderStart(dst, wiremessage.NextRequestID(), responseTo, opReply)
	dst = wiremessage.AppendReplyFlags(dst, wiremessage.AwaitCapable)
	dst = wiremessage.AppendReplyCursorID(dst, 0)
	dst = wiremessage.AppendReplyStartingFrom(dst, 0)
	dst = wiremessage.AppendReplyNumberReturned(dst, 1)
	dst = append(dst, doc...)
	return bsoncore.UpdateLength(dst, idx, int32(len(dst[idx:])))
}
