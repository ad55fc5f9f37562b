package dynamodbstreams

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	ddbs "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/smithy-go/middleware"
	smithytime "github.com/aws/smithy-go/time"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/esmd/esmd/payload"
)

// The raw route: a GetRecords response is read as it came, and each record
// is written into its event straight from the response's bytes (an
// Encoder), instead of being decoded by the SDK into its types, rebuilt
// into buffers of its own (Keys, images), then copied into the record and
// again into the event.
//
// It gives exactly the bytes of the SDK route (record): the decoder
// (parsePage) accepts only responses whose every record it can write
// verbatim or by reordering map entries: compact JSON, strings with no
// escape sequence and valid UTF-8 (which AppendString copies as they
// are), canonical base64, one member per attribute value, no null, no
// duplicate name, no unknown field. Any other response, or one of more
// than maxRawBody bytes, is handed to the SDK's decoder untouched and
// takes the SDK route. TestRawMatchesSDK and FuzzRawRecords check the two
// routes against each other.

// maxRawBody bounds the response a rawBody middleware reads (AWS answers at
// most 1 MB).
const maxRawBody = 32 << 20

// maxDepth bounds the nesting of attribute values the decoder follows
// (DynamoDB allows 32 levels); deeper ones take the SDK route.
const maxDepth = 40

// rawPageKey is the key of the *rawPage in GetRecords' ResultMetadata.
type rawPageKey struct{}

// withRawPage is the GetRecords option that installs rawBody.
func withRawPage(o *ddbs.Options) {
	o.APIOptions = append(o.APIOptions, func(s *middleware.Stack) error {
		return s.Deserialize.Add(rawBody{}, middleware.After)
	})
}

// rawBody sits between the transport and the SDK's deserializer (it is the
// last Deserialize middleware). It reads a successful response, and when
// parsePage accepts it, puts the page in the result's metadata and gives
// the deserializer an empty object in its place; otherwise it gives the
// deserializer the same bytes.
type rawBody struct{}

func (rawBody) ID() string { return "esmd.RawGetRecords" }

func (rawBody) HandleDeserialize(ctx context.Context, in middleware.DeserializeInput, next middleware.DeserializeHandler) (
	middleware.DeserializeOutput, middleware.Metadata, error,
) {
	out, md, err := next.HandleDeserialize(ctx, in)
	if err != nil {
		return out, md, err
	}
	resp, ok := out.RawResponse.(*smithyhttp.Response)
	if !ok || resp.StatusCode != http.StatusOK || resp.Body == nil {
		return out, md, nil
	}
	body := resp.Body
	var buf []byte
	if n := resp.ContentLength; n > 0 && n <= maxRawBody {
		buf = make([]byte, 0, n+1)
	}
	b, rerr := readAll(buf, io.LimitReader(body, maxRawBody+1))
	switch {
	case rerr != nil || len(b) > maxRawBody:
		// Let the SDK read (and fail on) the same stream.
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(b), body), body}
		return out, md, nil
	}
	body.Close()
	if p, ok := parsePage(b); ok {
		md.Set(rawPageKey{}, p)
		resp.Body = io.NopCloser(strings.NewReader("{}"))
	} else {
		resp.Body = io.NopCloser(bytes.NewReader(b))
	}
	return out, md, nil
}

// readAll is io.ReadAll into b (sized by the response's Content-Length,
// so a whole body is read with no copy).
func readAll(b []byte, r io.Reader) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// span is a range of a page's body.
type span struct{ from, to int32 }

// rawPage is a GetRecords response the raw route decoded.
type rawPage struct {
	body []byte
	next string
	recs []rawRecord
	// nodes are the attribute maps and lists whose entries are written in
	// another order than the body's (or that hold such); ents their
	// entries, each node's contiguous and sorted.
	nodes []node
	ents  []entry
}

// node is an attribute map (an image, or an M value) or an L value that
// is not written verbatim.
type node struct {
	kind     byte // 'I' image, 'M', 'L'
	first, n int32
}

// entry is one map entry (name and value) or list element (value only).
// The value is written as its span when sub < 0, else as nodes[sub].
type entry struct {
	name span
	val  span
	sub  int32
}

// rawRecord is one record of a rawPage.
type rawRecord struct {
	eventID, eventName, eventVersion, region, eventSource span
	hasIdentity                                           bool
	principal, idType                                     span
	hasCreated                                            bool
	created                                               time.Time
	keys                                                  image
	newImage, oldImage                                    image
	hasDDB                                                bool
	seq, viewType                                         span
	sizeBytes                                             int64
}

// image is an attribute map of a record: absent, verbatim (sub < 0) or a
// node.
type image struct {
	ok  bool
	val span
	sub int32
}

func (p *rawPage) str(s span) []byte { return p.body[s.from:s.to] }

// parser decodes a page; any refusal is ok == false.
type parser struct {
	p     *rawPage
	b     []byte
	i     int
	stack []entry
}

func parsePage(b []byte) (*rawPage, bool) {
	if len(b) > maxRawBody {
		return nil, false
	}
	x := &parser{p: &rawPage{body: b}, b: b}
	if !x.object(func(name []byte) bool {
		switch string(name) {
		case "Records":
			return x.records()
		case "NextShardIterator":
			if x.lit("null") {
				return true
			}
			s, ok := x.str()
			x.p.next = string(x.p.str(s))
			return ok
		}
		return false
	}) || x.i != len(b) {
		return nil, false
	}
	return x.p, true
}

func (x *parser) peek(c byte) bool { return x.i < len(x.b) && x.b[x.i] == c }

func (x *parser) eat(c byte) bool {
	if x.peek(c) {
		x.i++
		return true
	}
	return false
}

func (x *parser) lit(s string) bool {
	if len(x.b)-x.i >= len(s) && string(x.b[x.i:x.i+len(s)]) == s {
		x.i += len(s)
		return true
	}
	return false
}

// object reads {"name":value,...}, calling member after each name's colon,
// and refuses a name given twice.
func (x *parser) object(member func(name []byte) bool) bool {
	if !x.eat('{') {
		return false
	}
	if x.eat('}') {
		return true
	}
	var seen [8][]byte
	n := 0
	for {
		s, ok := x.str()
		if !ok || !x.eat(':') {
			return false
		}
		name := x.p.str(s)
		for _, v := range seen[:n] {
			if bytes.Equal(v, name) {
				return false
			}
		}
		if n == len(seen) || !member(name) {
			return false
		}
		seen[n] = name
		n++
		if x.eat('}') {
			return true
		}
		if !x.eat(',') {
			return false
		}
	}
}

// str reads a string that AppendString writes as it is: no escape, no
// control character, valid UTF-8. The span excludes the quotes.
func (x *parser) str() (span, bool) {
	if !x.eat('"') {
		return span{}, false
	}
	from := x.i
	n := bytes.IndexByte(x.b[from:], '"')
	if n < 0 {
		return span{}, false
	}
	s := x.b[from : from+n]
	x.i = from + n + 1
	if bytes.IndexByte(s, '\\') >= 0 {
		return span{}, false
	}
	i := 0
	for ; i+8 <= len(s); i += 8 {
		if w := binary.LittleEndian.Uint64(s[i:]); ((w-0x2020202020202020)&^w|w)&0x8080808080808080 != 0 {
			break // a control character or a non-ASCII byte
		}
	}
	for _, c := range s[i:] {
		if c < 0x20 {
			return span{}, false
		}
		if c >= utf8.RuneSelf {
			if !utf8.Valid(s[i:]) {
				return span{}, false
			}
			for _, c := range s[i:] {
				if c < 0x20 {
					return span{}, false
				}
			}
			break
		}
	}
	return span{int32(from), int32(from + n)}, true
}

func (x *parser) records() bool {
	if !x.eat('[') {
		return false
	}
	if x.eat(']') {
		return true
	}
	for {
		var r rawRecord
		if !x.record(&r) {
			return false
		}
		if r.hasDDB {
			x.p.recs = append(x.p.recs, r)
		}
		if x.eat(']') {
			return true
		}
		if !x.eat(',') {
			return false
		}
	}
}

func (x *parser) strInto(dst *span) bool {
	s, ok := x.str()
	*dst = s
	return ok
}

func (x *parser) record(r *rawRecord) bool {
	return x.object(func(name []byte) bool {
		switch string(name) {
		case "awsRegion":
			return x.strInto(&r.region)
		case "eventID":
			return x.strInto(&r.eventID)
		case "eventName":
			return x.strInto(&r.eventName)
		case "eventSource":
			return x.strInto(&r.eventSource)
		case "eventVersion":
			return x.strInto(&r.eventVersion)
		case "userIdentity":
			r.hasIdentity = true
			return x.object(func(name []byte) bool {
				switch string(name) {
				case "PrincipalId":
					return x.strInto(&r.principal)
				case "Type":
					return x.strInto(&r.idType)
				}
				return false
			})
		case "dynamodb":
			r.hasDDB = true
			return x.streamRecord(r)
		}
		return false
	})
}

func (x *parser) streamRecord(r *rawRecord) bool {
	return x.object(func(name []byte) bool {
		switch string(name) {
		case "ApproximateCreationDateTime":
			s, ok := x.number()
			if !ok {
				return false
			}
			// As the SDK reads an epoch-seconds timestamp.
			f, err := strconv.ParseFloat(string(x.p.str(s)), 64)
			if err != nil {
				return false
			}
			r.hasCreated, r.created = true, smithytime.ParseEpochSeconds(f)
			return true
		case "SizeBytes":
			s, ok := x.number()
			if !ok {
				return false
			}
			n, err := strconv.ParseInt(string(x.p.str(s)), 10, 64)
			r.sizeBytes = n
			return err == nil
		case "SequenceNumber":
			return x.strInto(&r.seq)
		case "StreamViewType":
			return x.strInto(&r.viewType)
		case "Keys":
			return x.image(&r.keys)
		case "NewImage":
			return x.image(&r.newImage)
		case "OldImage":
			return x.image(&r.oldImage)
		}
		return false
	})
}

// number reads a JSON number.
func (x *parser) number() (span, bool) {
	from := x.i
	x.eat('-')
	if x.eat('0') {
	} else if !x.digits() {
		return span{}, false
	}
	if x.eat('.') && !x.digits() {
		return span{}, false
	}
	if x.eat('e') || x.eat('E') {
		if !x.eat('+') {
			x.eat('-')
		}
		if !x.digits() {
			return span{}, false
		}
	}
	return span{int32(from), int32(x.i)}, true
}

func (x *parser) digits() bool {
	from := x.i
	for x.i < len(x.b) && x.b[x.i] >= '0' && x.b[x.i] <= '9' {
		x.i++
	}
	return x.i > from
}

func (x *parser) image(im *image) bool {
	from := x.i
	sub, ok := x.attrMap('I', 0)
	*im = image{ok: true, val: span{int32(from), int32(x.i)}, sub: sub}
	return ok
}

// attrMap reads an attribute map and returns the node it needs (-1 when
// it is written verbatim: names in order, values verbatim).
func (x *parser) attrMap(kind byte, depth int) (int32, bool) {
	if depth > maxDepth || !x.eat('{') {
		return -1, false
	}
	base := len(x.stack)
	defer func() { x.stack = x.stack[:base] }()
	verbatim := true
	if !x.eat('}') {
		for {
			name, ok := x.str()
			if !ok || !x.eat(':') {
				return -1, false
			}
			from := x.i
			sub, ok := x.value(depth + 1)
			if !ok {
				return -1, false
			}
			e := entry{name: name, val: span{int32(from), int32(x.i)}, sub: sub}
			if sub >= 0 || (len(x.stack) > base && x.cmp(x.stack[len(x.stack)-1].name, name) >= 0) {
				verbatim = false
			}
			x.stack = append(x.stack, e)
			if x.eat('}') {
				break
			}
			if !x.eat(',') {
				return -1, false
			}
		}
	}
	if verbatim {
		return -1, true
	}
	ents := x.stack[base:]
	slices.SortStableFunc(ents, func(a, b entry) int { return x.cmp(a.name, b.name) })
	for i := 1; i < len(ents); i++ {
		if x.cmp(ents[i-1].name, ents[i].name) == 0 {
			return -1, false // the SDK keeps the last: not worth the care
		}
	}
	return x.node(kind, ents), true
}

func (x *parser) cmp(a, b span) int { return bytes.Compare(x.p.str(a), x.p.str(b)) }

func (x *parser) node(kind byte, ents []entry) int32 {
	first := int32(len(x.p.ents))
	x.p.ents = append(x.p.ents, ents...)
	x.p.nodes = append(x.p.nodes, node{kind: kind, first: first, n: int32(len(ents))})
	return int32(len(x.p.nodes) - 1)
}

// value reads one attribute value ({"S":"x"}) and returns its node, -1
// when it is written verbatim.
func (x *parser) value(depth int) (int32, bool) {
	if depth > maxDepth || !x.eat('{') {
		return -1, false
	}
	t, ok := x.str()
	if !ok || !x.eat(':') {
		return -1, false
	}
	sub := int32(-1)
	switch string(x.p.str(t)) {
	case "S", "N":
		_, ok = x.str()
	case "B":
		ok = x.blob()
	case "BOOL", "NULL":
		ok = x.lit("true") || x.lit("false")
	case "SS", "NS":
		ok = x.list(func() bool { _, ok := x.str(); return ok })
	case "BS":
		ok = x.list(x.blob)
	case "M":
		sub, ok = x.attrMap('M', depth)
	case "L":
		sub, ok = x.attrList(depth)
	default:
		return -1, false
	}
	return sub, ok && x.eat('}')
}

func (x *parser) list(elem func() bool) bool {
	if !x.eat('[') {
		return false
	}
	if x.eat(']') {
		return true
	}
	for {
		if !elem() {
			return false
		}
		if x.eat(']') {
			return true
		}
		if !x.eat(',') {
			return false
		}
	}
}

// blob reads a base64 string that AppendBase64 would write alike:
// standard alphabet, padded, no stray bits.
func (x *parser) blob() bool {
	s, ok := x.str()
	if !ok {
		return false
	}
	b := x.p.str(s)
	if len(b)%4 != 0 {
		return false
	}
	_, err := base64.StdEncoding.Strict().Decode(make([]byte, base64.StdEncoding.DecodedLen(len(b))), b)
	return err == nil
}

func (x *parser) attrList(depth int) (int32, bool) {
	base := len(x.stack)
	defer func() { x.stack = x.stack[:base] }()
	verbatim := true
	ok := x.list(func() bool {
		from := x.i
		sub, ok := x.value(depth + 1)
		if sub >= 0 {
			verbatim = false
		}
		x.stack = append(x.stack, entry{val: span{int32(from), int32(x.i)}, sub: sub})
		return ok
	})
	if !ok {
		return -1, false
	}
	if verbatim {
		return -1, true
	}
	return x.node('L', x.stack[base:]), true
}

// appendNode writes node i.
func (p *rawPage) appendNode(dst []byte, i int32) []byte {
	n := &p.nodes[i]
	switch n.kind {
	case 'M':
		dst = append(dst, `{"M":{`...)
	case 'L':
		dst = append(dst, `{"L":[`...)
	default:
		dst = append(dst, '{')
	}
	for j, e := range p.ents[n.first : n.first+n.n] {
		if j > 0 {
			dst = append(dst, ',')
		}
		if n.kind != 'L' {
			dst = append(dst, '"')
			dst = append(dst, p.str(e.name)...)
			dst = append(dst, '"', ':')
		}
		if e.sub < 0 {
			dst = append(dst, p.str(e.val)...)
		} else {
			dst = p.appendNode(dst, e.sub)
		}
	}
	switch n.kind {
	case 'M':
		return append(dst, '}', '}')
	case 'L':
		return append(dst, ']', '}')
	}
	return append(dst, '}')
}

func (p *rawPage) appendImage(dst []byte, im *image) []byte {
	if im.sub < 0 {
		return append(dst, p.str(im.val)...)
	}
	return p.appendNode(dst, im.sub)
}

// rawEncoder writes one record of a rawPage into its event
// (source.Record.Encoder, payload.DynamoDBImages).
type rawEncoder struct {
	page *rawPage
	rec  *rawRecord
	dr   payload.DynamoDBRecord
}

// AppendEncoded implements payload.Encoder.
func (e *rawEncoder) AppendEncoded(dst []byte) []byte { return payload.AppendDynamoDB(dst, &e.dr) }

// AppendImage implements payload.DynamoDBImages.
func (e *rawEncoder) AppendImage(dst []byte, old bool) ([]byte, bool) {
	im := &e.rec.newImage
	if old {
		im = &e.rec.oldImage
	}
	if !im.ok {
		return dst, false
	}
	return e.page.appendImage(dst, im), true
}

// imageLen is the length of an image's encoding, -1 when absent: its
// span, as it is written in the same bytes or their reordering.
func imageLen(im *image) int {
	if !im.ok {
		return -1
	}
	return int(im.val.to - im.val.from)
}

// intern returns the string of b, without an allocation for the values
// most records carry.
func intern(b []byte) string {
	for _, s := range [...]string{"INSERT", "MODIFY", "REMOVE", "1.1", "aws:dynamodb",
		"NEW_AND_OLD_IMAGES", "NEW_IMAGE", "OLD_IMAGE", "KEYS_ONLY"} {
		if string(b) == s {
			return s
		}
	}
	return string(b)
}
