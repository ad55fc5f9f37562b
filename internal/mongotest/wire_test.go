package mongotest

import (
	"encoding/binary"
	"hash/crc32"
	"io"
	"net"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"
)

func marshal(t testing.TB, v any) []byte {
	b, err := bson.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// buildMsg builds an OP_MSG with a body and optional document sequences.
func buildMsg(body []byte, flags wiremessage.MsgFlag, seqID string, seq ...[]byte) []byte {
	idx, b := wiremessage.AppendHeaderStart(nil, 7, 0, opMsg)
	b = wiremessage.AppendMsgFlags(b, flags)
	b = wiremessage.AppendMsgSectionType(b, wiremessage.SingleDocument)
	b = append(b, body...)
	if seqID != "" {
		b = wiremessage.AppendMsgSectionType(b, wiremessage.DocumentSequence)
		sidx, sb := bsoncore.ReserveLength(b)
		sb = append(append(sb, seqID...), 0)
		for _, d := range seq {
			sb = append(sb, d...)
		}
		b = bsoncore.UpdateLength(sb, sidx, int32(len(sb[sidx:])))
	}
	if flags&flagChecksumPresent != 0 {
		b = append(b, 0, 0, 0, 0)
		b = bsoncore.UpdateLength(b, idx, int32(len(b[idx:])))
		sum := crc32.Checksum(b[:len(b)-4], crc32.MakeTable(crc32.Castagnoli))
		binary.LittleEndian.PutUint32(b[len(b)-4:], sum)
		return b
	}
	return bsoncore.UpdateLength(b, idx, int32(len(b[idx:])))
}

func buildQuery(ns string, query []byte) []byte {
	idx, b := wiremessage.AppendHeaderStart(nil, 9, 0, opQuery)
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = append(append(b, ns...), 0)
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint32(b, 0xffffffff)
	b = append(b, query...)
	return bsoncore.UpdateLength(b, idx, int32(len(b[idx:])))
}

// seedMessages are well-formed requests of every kind the server handles.
func seedMessages(t testing.TB) [][]byte {
	d := func(v bson.D) []byte { return marshal(t, v) }
	db := bson.E{Key: "$db", Value: "d"}
	return [][]byte{
		buildQuery("admin.$cmd", d(bson.D{{Key: "isMaster", Value: 1}, {Key: "helloOk", Value: true}})),
		buildMsg(d(bson.D{{Key: "hello", Value: 1}, {Key: "$db", Value: "admin"}}), 0, ""),
		buildMsg(d(bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}}), flagChecksumPresent, ""),
		buildMsg(d(bson.D{{Key: "insert", Value: "c"}, db}), 0, "documents",
			d(bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: bson.D{{Key: "b", Value: 1}}}}), d(bson.D{{Key: "x", Value: bson.A{1, "y"}}})),
		buildMsg(d(bson.D{{Key: "update", Value: "c"}, db}), 0, "updates",
			d(bson.D{{Key: "q", Value: bson.D{{Key: "_id", Value: 1}}}, {Key: "u", Value: bson.D{{Key: "$set", Value: bson.D{{Key: "a.c", Value: 2}}}, {Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}}}, {Key: "upsert", Value: true}})),
		buildMsg(d(bson.D{{Key: "delete", Value: "c"}, db, {Key: "deletes", Value: bson.A{bson.D{{Key: "q", Value: bson.D{{Key: "x", Value: bson.D{{Key: "$in", Value: bson.A{1}}}}}}, {Key: "limit", Value: 0}}}}}), 0, ""),
		buildMsg(d(bson.D{{Key: "find", Value: "c"}, {Key: "filter", Value: bson.D{{Key: "$or", Value: bson.A{bson.D{{Key: "a.b", Value: bson.D{{Key: "$gt", Value: 0}}}}}}}}, {Key: "sort", Value: bson.D{{Key: "a", Value: -1}}}, {Key: "projection", Value: bson.D{{Key: "a", Value: 1}}}, db}), 0, ""),
		buildMsg(d(bson.D{{Key: "aggregate", Value: "c"}, {Key: "pipeline", Value: bson.A{bson.D{{Key: "$changeStream", Value: bson.D{{Key: "fullDocument", Value: "updateLookup"}, {Key: "startAtOperationTime", Value: bson.Timestamp{T: 1}}}}}, bson.D{{Key: "$match", Value: bson.D{{Key: "operationType", Value: "insert"}}}}}}, {Key: "cursor", Value: bson.D{}}, db}), 0, ""),
		buildMsg(d(bson.D{{Key: "aggregate", Value: "c"}, {Key: "pipeline", Value: bson.A{bson.D{{Key: "$match", Value: bson.D{}}}, bson.D{{Key: "$group", Value: bson.D{{Key: "_id", Value: 1}, {Key: "n", Value: bson.D{{Key: "$sum", Value: 1}}}}}}}}, {Key: "cursor", Value: bson.D{}}, db}), 0, ""),
		buildMsg(d(bson.D{{Key: "getMore", Value: int64(5)}, {Key: "collection", Value: "c"}, {Key: "maxTimeMS", Value: 1}, db}), 0, ""),
		buildMsg(d(bson.D{{Key: "saslStart", Value: 1}, {Key: "mechanism", Value: "SCRAM-SHA-256"}, {Key: "payload", Value: []byte("n,,n=u,r=abc")}, {Key: "$db", Value: "admin"}}), 0, ""),
		buildMsg(d(bson.D{{Key: "drop", Value: "c"}, db}), flagMoreToCome, ""),
	}
}

func TestParseMessage(t *testing.T) {
	for i, msg := range seedMessages(t) {
		req, err := parseMessage(msg)
		if err != nil {
			t.Errorf("seed %d: %v", i, err)
			continue
		}
		if req.name == "" || req.db == "" {
			t.Errorf("seed %d: name %q db %q", i, req.name, req.db)
		}
	}
	// Every seed is a command the server runs; only the getMore (of no
	// cursor) and the saslStart (of no user) fail.
	s, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := &conn{s: s, id: 1}
	for i, msg := range seedMessages(t) {
		req, _ := parseMessage(msg)
		reply, closeConn := s.handle(c, req)
		if req.moreToCome {
			if reply != nil || closeConn {
				t.Errorf("seed %d: moreToCome got a reply", i)
			}
			continue
		}
		doc, err := parseReply(reply)
		if err != nil {
			t.Fatalf("seed %d: %v", i, err)
		}
		ok := doc.Lookup("ok").Double() == 1
		if want := req.name != "getMore" && req.name != "saslStart"; ok != want {
			t.Errorf("seed %d (%s): reply %s", i, req.name, doc)
		}
	}

	ins, _ := parseMessage(seedMessages(t)[3])
	if len(ins.seqs["documents"]) != 2 {
		t.Errorf("document sequence: %v", ins.seqs)
	}

	good := seedMessages(t)[1]
	bad := map[string][]byte{
		"short":             good[:10],
		"length mismatch":   append(append([]byte{}, good...), 0),
		"unknown opcode":    func() []byte { b := append([]byte{}, good...); b[12] = 99; return b }(),
		"compressed":        func() []byte { b := append([]byte{}, good...); b[12], b[13] = 0xdc, 0x07; return b }(),
		"required flag bit": buildMsg(marshal(t, bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "a"}}), 1<<5, ""),
		"bad checksum":      func() []byte { b := seedMessages(t)[2]; b[len(b)-1] ^= 1; return b }(),
		"no $db":            buildMsg(marshal(t, bson.D{{Key: "ping", Value: 1}}), 0, ""),
		"empty body":        buildMsg(marshal(t, bson.D{}), 0, ""),
		"bad nested doc": buildMsg(func() []byte {
			b := marshal(t, bson.D{{Key: "ping", Value: bson.D{{Key: "x", Value: 1}}}, {Key: "$db", Value: "a"}})
			b[12] = 0x7f
			return b
		}(), 0, ""),
		"two bodies": func() []byte {
			b := buildMsg(marshal(t, bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "a"}}), 0, "")
			return appendSection(b, 0, marshal(t, bson.D{{Key: "x", Value: 1}}))
		}(),
		"bad section kind": func() []byte {
			b := buildMsg(marshal(t, bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "a"}}), 0, "")
			return appendSection(b, 2, nil)
		}(),
		"query not command":  buildQuery("d.c", marshal(t, bson.D{{Key: "a", Value: 1}})),
		"short sequence doc": buildMsg(marshal(t, bson.D{{Key: "insert", Value: "c"}, {Key: "$db", Value: "d"}}), 0, "documents", []byte{4, 0, 0, 0}),
	}
	for name, msg := range bad {
		if _, err := parseMessage(msg); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

// appendSection appends a raw section to a built OP_MSG.
func appendSection(msg []byte, kind byte, data []byte) []byte {
	msg = append(append(msg, kind), data...)
	return bsoncore.UpdateLength(msg, 0, int32(len(msg)))
}

// TestBadConnections: oversized and malformed messages close their
// connection, and the server goes on serving.
func TestBadConnections(t *testing.T) {
	s, err := Start(Options{IOTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	hello := seedMessages(t)[1]
	for name, msg := range map[string][]byte{
		"oversized":  binary.LittleEndian.AppendUint32(nil, MaxMessageSize+1),
		"too short":  binary.LittleEndian.AppendUint32(nil, 3),
		"garbage":    append(binary.LittleEndian.AppendUint32(nil, 20), "0123456789abcdef"...),
		"compressed": func() []byte { b := append([]byte{}, hello...); b[12], b[13] = 0xdc, 0x07; return b }(),
	} {
		nc, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		nc.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := nc.Write(msg); err != nil {
			t.Fatal(err)
		}
		if n, err := nc.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("%s: read %d, %v; want the server to close", name, n, err)
		}
		nc.Close()
	}
	// A truncated message times out under IOTimeout.
	nc, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	nc.Write(hello[:20])
	t0 := time.Now()
	if _, err := nc.Read(make([]byte, 1)); err != io.EOF || time.Since(t0) > 3*time.Second {
		t.Errorf("truncated message: %v after %v", err, time.Since(t0))
	}

	// Still serving: hello over a raw connection.
	nc2, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	nc2.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := nc2.Write(hello); err != nil {
		t.Fatal(err)
	}
	reply, err := readMessage(nc2, time.Second, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, respTo, op, _, ok := wiremessage.ReadHeader(reply); !ok || op != opMsg || respTo != 7 {
		t.Errorf("reply header: op %v responseTo %d", op, respTo)
	}
	if st := s.Stats(); st.TotalConns != 6 {
		t.Errorf("TotalConns %d, want 6", st.TotalConns)
	}
}

// FuzzMessage feeds arbitrary bytes through the whole request path, parser
// and command handlers, of one server (no network). It must never panic.
// Run it for a few seconds:
//
//	go test -run XXX -fuzz FuzzMessage -fuzztime 10s ./internal/mongotest
func FuzzMessage(f *testing.F) {
	for _, m := range seedMessages(f) {
		f.Add(m)
	}
	s, err := Start(Options{Username: "u", Password: "p", MaxEvents: 50})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	c := &conn{s: s, id: 1, authed: true}
	f.Fuzz(func(t *testing.T, msg []byte) {
		req, err := parseMessage(msg)
		if err != nil {
			return
		}
		reply, _ := s.handle(c, req)
		if reply != nil {
			if _, err := parseReply(reply); err != nil {
				t.Fatalf("reply to %s is malformed: %v", req.body, err)
			}
		}
	})
}

// parseReply checks a reply's framing and returns its document.
func parseReply(msg []byte) (bson.Raw, error) {
	length, _, _, op, rem, ok := wiremessage.ReadHeader(msg)
	if !ok || int(length) != len(msg) {
		return nil, io.ErrUnexpectedEOF
	}
	switch op {
	case opMsg:
		rem = rem[5:]
	case opReply:
		rem = rem[20:]
	}
	doc, rest, ok := bsoncore.ReadDocument(rem)
	if !ok || len(rest) != 0 {
		return nil, io.ErrUnexpectedEOF
	}
	return bson.Raw(doc), validateDoc(doc)
}
