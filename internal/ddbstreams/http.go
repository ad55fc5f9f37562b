package ddbstreams

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
)

const targetPrefix = "DynamoDBStreams_20120810."

// maxGetRecordsBytes is the 1 MB a GetRecords response holds at most.
const maxGetRecordsBytes = 1 << 20

// apiError is an error answered in the AWS JSON 1.0 shape.
type apiError struct {
	status int
	typ    string
	msg    string
}

func (e *apiError) Error() string { return e.typ + ": " + e.msg }

func notFound(msg string) *apiError {
	return &apiError{http.StatusBadRequest, "ResourceNotFoundException", "Requested resource not found: " + msg}
}

func invalid(msg string) *apiError {
	return &apiError{http.StatusBadRequest, "ValidationException", msg}
}

// ServeHTTP implements the AWS JSON 1.0 protocol of DynamoDB Streams.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	op, ok := strings.CutPrefix(target, targetPrefix)
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if r.Method != http.MethodPost || !ok || err != nil {
		writeError(w, &apiError{http.StatusBadRequest, "UnknownOperationException", "Unknown operation " + target})
		return
	}
	s.mu.Lock()
	s.calls[op]++
	var f *fault
	if fs := s.faults[op]; len(fs) > 0 {
		f = &fs[0]
		s.faults[op] = fs[1:]
	}
	s.mu.Unlock()
	if f != nil {
		writeError(w, &apiError{f.status, f.typ, f.msg})
		return
	}
	var out any
	var aerr *apiError
	switch op {
	case "DescribeStream":
		var in describeStreamInput
		if aerr = decode(body, &in); aerr == nil {
			out, aerr = s.describeStream(&in)
		}
	case "GetShardIterator":
		var in getShardIteratorInput
		if aerr = decode(body, &in); aerr == nil {
			out, aerr = s.getShardIterator(&in)
		}
	case "GetRecords":
		var in getRecordsInput
		if aerr = decode(body, &in); aerr == nil {
			out, aerr = s.getRecords(&in)
		}
	case "ListStreams":
		var in listStreamsInput
		if aerr = decode(body, &in); aerr == nil {
			out, aerr = s.listStreams(&in)
		}
	default:
		aerr = &apiError{http.StatusBadRequest, "UnknownOperationException", "Unknown operation " + target}
	}
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	b, err := marshal(out)
	if err != nil {
		writeError(w, &apiError{http.StatusInternalServerError, "InternalServerError", err.Error()})
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	_, _ = w.Write(b)
}

func decode(body []byte, v any) *apiError {
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return &apiError{http.StatusBadRequest, "SerializationException", err.Error()}
	}
	return nil
}

func writeError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.WriteHeader(e.status)
	b, _ := json.Marshal(map[string]string{"__type": "com.amazonaws.dynamodb.v20120810#" + e.typ, "message": e.msg})
	_, _ = w.Write(b)
}

// marshal is json.Marshal without HTML escaping (AWS does not escape <>&).
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// Wire shapes.

type describeStreamInput struct {
	StreamArn             string
	Limit                 *int
	ExclusiveStartShardId string
	ShardFilter           *struct{ Type, ShardId string }
}

type keySchemaJSON struct {
	AttributeName string
	KeyType       string
}

type seqRangeJSON struct {
	StartingSequenceNumber string `json:",omitempty"`
	EndingSequenceNumber   string `json:",omitempty"`
}

type shardJSON struct {
	ShardId             string
	ParentShardId       string `json:",omitempty"`
	SequenceNumberRange seqRangeJSON
}

type streamDescriptionJSON struct {
	StreamArn               string
	StreamLabel             string
	StreamStatus            string
	StreamViewType          string
	CreationRequestDateTime float64
	TableName               string
	KeySchema               []keySchemaJSON
	Shards                  []shardJSON
	LastEvaluatedShardId    string `json:",omitempty"`
}

type getShardIteratorInput struct {
	StreamArn         string
	ShardId           string
	ShardIteratorType string
	SequenceNumber    string
}

type getRecordsInput struct {
	ShardIterator string
	Limit         *int
}

type listStreamsInput struct {
	TableName               string
	Limit                   *int
	ExclusiveStartStreamArn string
}

type streamJSON struct {
	StreamArn   string
	TableName   string
	StreamLabel string
}

type identityJSON struct {
	PrincipalID string `json:"PrincipalId,omitempty"`
	Type        string `json:",omitempty"`
}

type streamRecordJSON struct {
	ApproximateCreationDateTime int64
	Keys                        json.RawMessage `json:",omitempty"`
	NewImage                    json.RawMessage `json:",omitempty"`
	OldImage                    json.RawMessage `json:",omitempty"`
	SequenceNumber              string
	SizeBytes                   int64
	StreamViewType              string
}

type recordJSON struct {
	AwsRegion    string           `json:"awsRegion"`
	Dynamodb     streamRecordJSON `json:"dynamodb"`
	EventID      string           `json:"eventID"`
	EventName    string           `json:"eventName"`
	EventSource  string           `json:"eventSource"`
	EventVersion string           `json:"eventVersion"`
	UserIdentity *identityJSON    `json:"userIdentity,omitempty"`
}

func limit(p *int, def, max int, member string) (int, *apiError) {
	if p == nil {
		return def, nil
	}
	if *p < 1 {
		return 0, invalid(fmt.Sprintf("1 validation error detected: Value '%d' at '%s' failed to satisfy constraint: Member must have value greater than or equal to 1", *p, member))
	}
	if *p > max {
		return 0, invalid(fmt.Sprintf("1 validation error detected: Value '%d' at '%s' failed to satisfy constraint: Member must have value less than or equal to %d", *p, member, max))
	}
	return *p, nil
}

func (s *Server) stream(arn string) (*stream, *apiError) {
	if arn == "" {
		return nil, invalid("1 validation error detected: Value null at 'streamArn' failed to satisfy constraint: Member must not be null")
	}
	st := s.byARN[arn]
	if st == nil {
		return nil, notFound("Stream: " + arn + " not found")
	}
	return st, nil
}

func (s *Server) describeStream(in *describeStreamInput) (any, *apiError) {
	n, aerr := limit(in.Limit, 100, 100, "limit")
	if aerr != nil {
		return nil, aerr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st, aerr := s.stream(in.StreamArn)
	if aerr != nil {
		return nil, aerr
	}
	s.calls["DescribeStream "+st.arn]++
	shards := st.shards
	if f := in.ShardFilter; f != nil {
		if f.Type != "CHILD_SHARDS" {
			return nil, invalid(fmt.Sprintf("1 validation error detected: Value '%s' at 'shardFilter.type' failed to satisfy constraint: Member must satisfy enum value set: [CHILD_SHARDS]", f.Type))
		}
		var kids []*shard
		for _, sh := range st.shards {
			if sh.parent == f.ShardId {
				kids = append(kids, sh)
			}
		}
		shards = kids
	}
	if in.ExclusiveStartShardId != "" {
		i := 0
		for i < len(shards) && shards[i].id != in.ExclusiveStartShardId {
			i++
		}
		shards = shards[min(i+1, len(shards)):]
	}
	d := streamDescriptionJSON{
		StreamArn: st.arn, StreamLabel: st.label, StreamStatus: string(st.status), StreamViewType: string(st.view),
		CreationRequestDateTime: float64(st.created.UnixMilli()) / 1000, TableName: st.table,
		Shards: []shardJSON{},
	}
	for _, k := range st.keySchema {
		d.KeySchema = append(d.KeySchema, keySchemaJSON{AttributeName: deref(k.AttributeName), KeyType: string(k.KeyType)})
	}
	for i, sh := range shards {
		if i == n {
			d.LastEvaluatedShardId = shards[i-1].id
			break
		}
		j := shardJSON{ShardId: sh.id, ParentShardId: sh.parent, SequenceNumberRange: seqRangeJSON{StartingSequenceNumber: fmt.Sprint(sh.startSeq)}}
		if sh.closed {
			j.SequenceNumberRange.EndingSequenceNumber = fmt.Sprint(sh.endSeq)
		}
		d.Shards = append(d.Shards, j)
	}
	return map[string]any{"StreamDescription": d}, nil
}

// iterator is what a shard iterator string encodes.
type iterator struct {
	arn, shard string
	pos        int // index of the next record in shard.recs
	created    time.Time
}

func (it iterator) String() string {
	raw := fmt.Sprintf("%s|%s|%d|%d", it.arn, it.shard, it.pos, it.created.UnixNano())
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

func parseIterator(s string) (iterator, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return iterator{}, false
	}
	parts := strings.Split(string(raw), "|")
	if len(parts) != 4 {
		return iterator{}, false
	}
	pos, err1 := strconv.Atoi(parts[2])
	ns, err2 := strconv.ParseInt(parts[3], 10, 64)
	if err1 != nil || err2 != nil || pos < 0 {
		return iterator{}, false
	}
	return iterator{parts[0], parts[1], pos, time.Unix(0, ns)}, true
}

var trimmedErr = &apiError{http.StatusBadRequest, "TrimmedDataAccessException", "The operation attempted to read past the oldest stream record in a shard."}

func (s *Server) getShardIterator(in *getShardIteratorInput) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, aerr := s.stream(in.StreamArn)
	if aerr != nil {
		return nil, aerr
	}
	s.calls["GetShardIterator "+st.arn]++
	if in.ShardId == "" {
		return nil, invalid("1 validation error detected: Value null at 'shardId' failed to satisfy constraint: Member must not be null")
	}
	sh := st.byID[in.ShardId]
	if sh == nil {
		return nil, notFound("Shard does not exist")
	}
	it := iterator{arn: st.arn, shard: sh.id, created: s.now()}
	switch types.ShardIteratorType(in.ShardIteratorType) {
	case types.ShardIteratorTypeTrimHorizon:
		it.pos = sh.trimmed
	case types.ShardIteratorTypeLatest:
		it.pos = len(sh.recs)
	case types.ShardIteratorTypeAtSequenceNumber, types.ShardIteratorTypeAfterSequenceNumber:
		if in.SequenceNumber == "" {
			return nil, invalid("Must specify a sequence number with ShardIteratorType " + in.ShardIteratorType)
		}
		seq, err := strconv.ParseUint(in.SequenceNumber, 10, 64)
		if err != nil {
			return nil, invalid("Invalid SequenceNumber: " + in.SequenceNumber)
		}
		after := types.ShardIteratorType(in.ShardIteratorType) == types.ShardIteratorTypeAfterSequenceNumber
		it.pos = sort.Search(len(sh.recs), func(i int) bool {
			if after {
				return sh.recs[i].seq > seq
			}
			return sh.recs[i].seq >= seq
		})
		if it.pos < sh.trimmed {
			return nil, trimmedErr
		}
	default:
		return nil, invalid(fmt.Sprintf("1 validation error detected: Value '%s' at 'shardIteratorType' failed to satisfy constraint: Member must satisfy enum value set: [TRIM_HORIZON, LATEST, AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER]", in.ShardIteratorType))
	}
	return map[string]string{"ShardIterator": it.String()}, nil
}

func (s *Server) getRecords(in *getRecordsInput) (any, *apiError) {
	n, aerr := limit(in.Limit, 1000, 1000, "limit")
	if aerr != nil {
		return nil, aerr
	}
	it, ok := parseIterator(in.ShardIterator)
	if !ok {
		return nil, invalid("Invalid ShardIterator")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if now.Sub(it.created) > IteratorTTL {
		// Chosen wording (AWS documents the type, not the message): the
		// one Kinesis uses.
		return nil, &apiError{http.StatusBadRequest, "ExpiredIteratorException", fmt.Sprintf(
			"Iterator expired. The iterator was created at time %s while right now it is %s which is further in the future than the tolerated delay of %d milliseconds.",
			it.created.UTC().Format(time.UnixDate), now.UTC().Format(time.UnixDate), IteratorTTL.Milliseconds())}
	}
	st := s.byARN[it.arn]
	if st == nil {
		return nil, notFound("Stream: " + it.arn + " not found")
	}
	s.calls["GetRecords "+st.arn]++
	sh := st.byID[it.shard]
	if sh == nil {
		return nil, notFound("Shard does not exist")
	}
	if it.pos < sh.trimmed {
		return nil, trimmedErr
	}
	pos := min(it.pos, len(sh.recs))
	var buf bytes.Buffer
	buf.WriteString(`{"Records":[`)
	size := 0
	for i := 0; i < n && pos < len(sh.recs); i++ {
		r := sh.recs[pos]
		if i > 0 && size+len(r.json) > maxGetRecordsBytes {
			break
		}
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(r.json)
		size += len(r.json)
		pos++
	}
	buf.WriteByte(']')
	if !sh.closed || pos < len(sh.recs) {
		next := iterator{arn: it.arn, shard: it.shard, pos: pos, created: now}
		buf.WriteString(`,"NextShardIterator":"` + next.String() + `"`)
	}
	buf.WriteByte('}')
	return json.RawMessage(buf.Bytes()), nil
}

func (s *Server) listStreams(in *listStreamsInput) (any, *apiError) {
	n, aerr := limit(in.Limit, 100, 100, "limit")
	if aerr != nil {
		return nil, aerr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var sel []*stream
	for _, st := range s.streams {
		if in.TableName == "" || st.table == in.TableName {
			sel = append(sel, st)
		}
	}
	if in.ExclusiveStartStreamArn != "" {
		i := 0
		for i < len(sel) && sel[i].arn != in.ExclusiveStartStreamArn {
			i++
		}
		sel = sel[min(i+1, len(sel)):]
	}
	out := struct {
		Streams                []streamJSON
		LastEvaluatedStreamArn string `json:",omitempty"`
	}{Streams: []streamJSON{}}
	for i, st := range sel {
		if i == n {
			out.LastEvaluatedStreamArn = sel[i-1].arn
			break
		}
		out.Streams = append(out.Streams, streamJSON{StreamArn: st.arn, TableName: st.table, StreamLabel: st.label})
	}
	return out, nil
}

// Attribute values in DynamoDB's typed JSON.

func attrMap(m map[string]types.AttributeValue) json.RawMessage {
	if m == nil {
		return nil
	}
	return appendAttrMap(nil, m)
}

func appendAttrMap(dst []byte, m map[string]types.AttributeValue) []byte {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	dst = append(dst, '{')
	for i, k := range names {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, k)
		dst = append(dst, ':')
		dst = appendAttr(dst, m[k])
	}
	return append(dst, '}')
}

func appendJSONString(dst []byte, s string) []byte {
	b, _ := marshal(s)
	return append(dst, b...)
}

func appendStrings(dst []byte, ss []string) []byte {
	dst = append(dst, '[')
	for i, s := range ss {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, s)
	}
	return append(dst, ']')
}

func appendAttr(dst []byte, v types.AttributeValue) []byte {
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		dst = append(dst, `{"S":`...)
		dst = appendJSONString(dst, v.Value)
	case *types.AttributeValueMemberN:
		dst = append(dst, `{"N":`...)
		dst = appendJSONString(dst, v.Value)
	case *types.AttributeValueMemberB:
		dst = append(dst, `{"B":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, v.Value)
		dst = append(dst, '"')
	case *types.AttributeValueMemberBOOL:
		dst = append(dst, `{"BOOL":`...)
		dst = strconv.AppendBool(dst, v.Value)
	case *types.AttributeValueMemberNULL:
		dst = append(dst, `{"NULL":`...)
		dst = strconv.AppendBool(dst, v.Value)
	case *types.AttributeValueMemberSS:
		dst = append(dst, `{"SS":`...)
		dst = appendStrings(dst, v.Value)
	case *types.AttributeValueMemberNS:
		dst = append(dst, `{"NS":`...)
		dst = appendStrings(dst, v.Value)
	case *types.AttributeValueMemberBS:
		dst = append(dst, `{"BS":[`...)
		for i, b := range v.Value {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, '"')
			dst = base64.StdEncoding.AppendEncode(dst, b)
			dst = append(dst, '"')
		}
		dst = append(dst, ']')
	case *types.AttributeValueMemberL:
		dst = append(dst, `{"L":[`...)
		for i, e := range v.Value {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendAttr(dst, e)
		}
		dst = append(dst, ']')
	case *types.AttributeValueMemberM:
		dst = append(dst, `{"M":`...)
		dst = appendAttrMap(dst, v.Value)
	default:
		return append(dst, `{"NULL":true}`...)
	}
	return append(dst, '}')
}

// attrMapSize approximates DynamoDB's item size: attribute names plus
// value sizes (strings and binaries by length, numbers by digits).
func attrMapSize(m map[string]types.AttributeValue) int64 {
	var n int64
	for k, v := range m {
		n += int64(len(k)) + attrSize(v)
	}
	return n
}

func attrSize(v types.AttributeValue) int64 {
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		return int64(len(v.Value))
	case *types.AttributeValueMemberN:
		return int64(len(v.Value)/2 + 1)
	case *types.AttributeValueMemberB:
		return int64(len(v.Value))
	case *types.AttributeValueMemberSS:
		var n int64
		for _, s := range v.Value {
			n += int64(len(s))
		}
		return n
	case *types.AttributeValueMemberNS:
		var n int64
		for _, s := range v.Value {
			n += int64(len(s)/2 + 1)
		}
		return n
	case *types.AttributeValueMemberBS:
		var n int64
		for _, b := range v.Value {
			n += int64(len(b))
		}
		return n
	case *types.AttributeValueMemberL:
		n := int64(3)
		for _, e := range v.Value {
			n += attrSize(e) + 1
		}
		return n
	case *types.AttributeValueMemberM:
		return 3 + attrMapSize(v.Value)
	}
	return 1
}
