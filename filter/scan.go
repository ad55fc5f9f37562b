package filter

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"unicode/utf8"
)

// ErrInvalidRecord is wrapped by the errors Match returns for a record that
// is not a JSON object (as far as the scanner had to read it) or nests
// deeper than maxDepth.
var ErrInvalidRecord = errors.New("invalid record")

// maxDepth bounds recursion into the parts of a record the patterns
// mention; skipped parts are walked iteratively and have no limit.
const maxDepth = 10000

type scanCtx uint8

const (
	ctxNone    scanCtx = iota
	ctxRoot            // members of the record object
	ctxKinesis         // members of a Kinesis record's "kinesis" object
)

// state is the per-call scratch space, pooled so that steady-state
// matching allocates nothing.
type state struct {
	m       *Matcher
	src     Source
	sat     []uint64 // current scope: clauses satisfied by a value
	pres    []uint64 // current scope: clauses whose field has a leaf
	slab    []uint64 // scope bitsets for scoped arrays
	slabTop int
	scopes  int // number of open scoped arrays
	depth   int
	strBuf  []byte
	foldBuf []byte
	dataBuf []byte
	valid   []byte // validator stack
	data    dataClass
	frame   scopeFrame
	matched bool
	err     error
}

// scopeFrame is the innermost open scoped array.
type scopeFrame struct {
	n       *node
	done    []uint64 // per scope rule: satisfied by some element
	presAny []uint64 // union of the elements' presence bits
}

func (m *Matcher) getState(src Source) *state {
	s, _ := m.pool.Get().(*state)
	if s == nil {
		s = &state{m: m}
	}
	need := 2 * m.words
	if cap(s.slab) < need {
		s.slab = make([]uint64, need, need*4)
	}
	s.slab = s.slab[:cap(s.slab)]
	clear(s.slab[:need])
	s.sat, s.pres = s.slab[:m.words:m.words], s.slab[m.words:need:need]
	s.slabTop = need
	s.src, s.scopes, s.depth, s.data, s.matched, s.err = src, 0, 0, dataNone, false, nil
	return s
}

func (s *state) fail(format string, args ...any) {
	if s.err == nil {
		s.err = fmt.Errorf("filter: %w: "+format, append([]any{ErrInvalidRecord}, args...)...)
	}
}

// Match reports whether record matches at least one filter. record is one
// record's JSON exactly as it appears in the Lambda event for src (an SQS
// message with its string "body", a Kinesis record with base64
// "kinesis.data", a Kafka record with base64 "value", an MQ message with
// base64 "data", a DynamoDB stream record); Match applies that source's
// decoding before matching (see the package documentation).
//
// Match reads only the parts of the record some pattern mentions and
// stops as soon as the answer is known, so it does not fully validate the
// record; a malformed record it notices gives an error wrapping
// ErrInvalidRecord. It allocates nothing in the steady state.
func (m *Matcher) Match(src Source, record []byte) (bool, error) {
	if m.filters == 0 {
		return true, nil
	}
	s := m.getState(src)
	ok, err := s.run(record)
	s.strBuf, s.foldBuf = s.strBuf[:0], s.foldBuf[:0]
	m.pool.Put(s)
	return ok, err
}

func (s *state) run(b []byte) (bool, error) {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false, fmt.Errorf("filter: %w: record is not a JSON object", ErrInvalidRecord)
	}
	i = s.object(b, i, s.m.root, ctxRoot)
	if s.err != nil {
		return false, s.err
	}
	if s.matched {
		return true, nil
	}
	if skipWS(b, i) != len(b) {
		return false, fmt.Errorf("filter: %w: unexpected data after the record", ErrInvalidRecord)
	}
	s.applyDataRules()
	return s.evaluate(), nil
}

// applyDataRules implements Lambda's data-format mismatch tables (see the
// package documentation) by forcing the payload clauses of each sub-rule
// to pass ("metadata only") or to fail ("dropped").
func (s *state) applyDataRules() {
	m := s.m
	force := func(mask []uint64) {
		for w, v := range mask {
			s.sat[w] |= v
		}
	}
	drop := func(mask []uint64) {
		for w, v := range mask {
			s.sat[w] &^= v
			s.pres[w] |= v
		}
	}
	switch s.src {
	case SourceSQS:
		switch s.data {
		case dataJSON:
			drop(m.leafMask["body"])
		case dataPlain, dataUndecoded:
			drop(m.objMask["body"])
		}
	case SourceKinesis:
		if s.data == dataPlain || s.data == dataUndecoded {
			drop(m.objMask["data"])
			drop(m.objMask["kinesis.data"])
		}
	case SourceKafka, SourceMQ:
		key := s.src.DataKey()
		switch s.data {
		case dataJSON:
			force(m.leafMask[key])
		case dataPlain:
			force(m.objMask[key])
		case dataUndecoded:
			force(m.leafMask[key])
			force(m.objMask[key])
		}
	}
}

func (s *state) evaluate() bool {
	for i := range s.m.subs {
		if s.complete(&s.m.subs[i]) {
			return true
		}
	}
	return false
}

func (s *state) complete(r *subRule) bool {
	for _, w := range r.words {
		if w.all&^(s.sat[w.w]|(w.aa&^s.pres[w.w])) != 0 {
			return false
		}
	}
	return true
}

func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// str reads the JSON string at b[i] (a quote). The result aliases b when
// the string has no escapes and s.strBuf otherwise.
func (s *state) str(b []byte, i int) ([]byte, int) {
	// Most strings (keys, short values) are short and unescaped: a plain
	// loop beats bytes.IndexByte's call overhead there.
	j := i + 1
	for ; j < len(b); j++ {
		c := b[j]
		if c == '"' {
			return b[i+1 : j], j + 1
		}
		if c == '\\' {
			break
		}
		if j-i > 32 {
			k := indexQuoteOrBackslash(b[j:])
			if k < 0 {
				j = len(b)
				break
			}
			j += k
			if b[j] == '"' {
				return b[i+1 : j], j + 1
			}
			break
		}
	}
	if j >= len(b) {
		s.fail("unterminated string at offset %d", i)
		return nil, len(b)
	}
	// Escaped string: decode into strBuf.
	buf := append(s.strBuf[:0], b[i+1:j]...)
	for j < len(b) {
		c := b[j]
		switch {
		case c == '"':
			s.strBuf = buf
			return buf, j + 1
		case c == '\\':
			var ok bool
			buf, j, ok = unescapeOne(buf, b, j)
			if !ok {
				s.fail("invalid escape in string at offset %d", j)
				return nil, len(b)
			}
		default:
			buf = append(buf, c)
			j++
		}
	}
	s.fail("unterminated string at offset %d", i)
	return nil, len(b)
}

// indexQuoteOrBackslash finds the first '"' or '\\' in b.
func indexQuoteOrBackslash(b []byte) int {
	q := bytes.IndexByte(b, '"')
	if q < 0 {
		q = len(b)
	}
	if k := bytes.IndexByte(b[:q], '\\'); k >= 0 {
		return k
	}
	if q == len(b) {
		return -1
	}
	return q
}

// skipString returns the offset after the JSON string at b[i], or -1.
func skipString(b []byte, i int) int {
	j := i + 1
	for ; j < len(b) && j-i <= 32; j++ {
		switch b[j] {
		case '"':
			return j + 1
		case '\\':
			j++
		}
	}
	for j < len(b) {
		k := indexQuoteOrBackslash(b[j:])
		if k < 0 {
			return -1
		}
		j += k
		if b[j] == '"' {
			return j + 1
		}
		j += 2 // skip the escaped byte
	}
	return -1
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// specialMask flags (high bit of each byte) the bytes of x that are '"',
// '{', '}', '[' or ']'. Bytes after the first flagged one may be flagged
// spuriously, never bytes before it, so the first flag is exact. '[' and
// ']' differ from '{' and '}' only in bit 0x20, hence the OR.
func specialMask(x uint64) uint64 {
	y := x | 0x2020202020202020
	return hasZero(x^(lsb*'"')) | hasZero(y^(lsb*'{')) | hasZero(y^(lsb*'}'))
}

func hasZero(v uint64) uint64 { return (v - lsb) &^ v & msb }

// skipTab marks the bytes that matter when skipping a container.
var skipTab = [256]uint8{'"': 1, '{': 2, '[': 2, '}': 3, ']': 3}

// skip returns the offset after the JSON value at b[i] without looking
// inside it beyond bracket matching.
func (s *state) skip(b []byte, i int) int {
	switch b[i] {
	case '"':
		j := skipString(b, i)
		if j < 0 {
			s.fail("unterminated string at offset %d", i)
			return len(b)
		}
		return j
	case '{', '[':
		depth := 0
		j := i
		for j < len(b) {
			// Jump eight bytes at a time to the next byte that matters.
			for j+8 <= len(b) {
				if m := specialMask(binary.LittleEndian.Uint64(b[j:])); m != 0 {
					j += bits.TrailingZeros64(m) / 8
					break
				}
				j += 8
			}
			if j >= len(b) {
				break
			}
			switch skipTab[b[j]] {
			case 1:
				k := skipString(b, j)
				if k < 0 {
					s.fail("unterminated string at offset %d", j)
					return len(b)
				}
				j = k
				continue
			case 2:
				depth++
			case 3:
				depth--
				if depth == 0 {
					return j + 1
				}
			}
			j++
		}
		s.fail("unterminated container at offset %d", i)
		return len(b)
	}
	j := i
	for j < len(b) {
		switch b[j] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			if j == i {
				s.fail("unexpected character %q at offset %d", b[i], i)
			}
			return j
		}
		j++
	}
	return j
}

// value scans the value at b[i] for trie node n.
func (s *state) value(b []byte, i int, n *node, ctx scanCtx) int {
	switch c := b[i]; {
	case c == '{':
		if !n.hasKids() {
			return s.skip(b, i)
		}
		return s.object(b, i, n, ctx)
	case c == '[':
		return s.array(b, i, n)
	case c == '"':
		v, j := s.str(b, i)
		if s.err == nil {
			s.leaf(n, 's', v)
		}
		return j
	case c == '-' || (c >= '0' && c <= '9'):
		j := i
		for j < len(b) && isNumByte(b[j]) {
			j++
		}
		if !validJSONNumber(b[i:j]) {
			s.fail("invalid number at offset %d", i)
			return len(b)
		}
		s.leaf(n, 'n', b[i:j])
		return j
	case c == 't' && bytes.HasPrefix(b[i:], []byte("true")):
		s.leaf(n, 't', nil)
		return i + 4
	case c == 'f' && bytes.HasPrefix(b[i:], []byte("false")):
		s.leaf(n, 'f', nil)
		return i + 5
	case c == 'n' && bytes.HasPrefix(b[i:], []byte("null")):
		s.leaf(n, 'z', nil)
		return i + 4
	}
	s.fail("unexpected character %q at offset %d", b[i], i)
	return len(b)
}

// lookup finds the trie node for an object key. A key containing dots is
// the same path as the nested keys it joins ("a.b" is a then b), as in the
// reference engine's flattening.
func lookup(n *node, key []byte) *node {
	if bytes.IndexByte(key, '.') < 0 {
		return n.child(key)
	}
	for n != nil {
		d := bytes.IndexByte(key, '.')
		if d < 0 {
			return n.child(key)
		}
		n = n.child(key[:d])
		key = key[d+1:]
	}
	return nil
}

func (s *state) object(b []byte, i int, n *node, ctx scanCtx) int {
	s.depth++
	if s.depth > maxDepth {
		s.fail("nested deeper than %d", maxDepth)
		return len(b)
	}
	defer func() { s.depth-- }()
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1
	}
	for i < len(b) {
		if b[i] != '"' {
			s.fail("expected a field name at offset %d", i)
			return len(b)
		}
		key, j := s.str(b, i)
		if s.err != nil {
			return len(b)
		}
		j = skipWS(b, j)
		if j >= len(b) || b[j] != ':' {
			s.fail("expected ':' at offset %d", j)
			return len(b)
		}
		j = skipWS(b, j+1)
		if j >= len(b) {
			break
		}
		ch := lookup(n, key)
		switch {
		case ctx == ctxRoot && s.src != SourceNone && s.special(key):
			j = s.payload(b, j, key, ch, n)
		case ctx == ctxKinesis && string(key) == "data":
			j = s.decodeValue(b, j, ch, true)
		case ch == nil:
			j = s.skip(b, j)
		default:
			j = s.value(b, j, ch, ctxNone)
		}
		if s.err != nil || s.matched {
			return len(b)
		}
		j = skipWS(b, j)
		if j < len(b) && b[j] == ',' {
			i = skipWS(b, j+1)
			continue
		}
		if j < len(b) && b[j] == '}' {
			return j + 1
		}
		s.fail("expected ',' or '}' at offset %d", j)
		return len(b)
	}
	s.fail("unterminated object")
	return len(b)
}

// special reports whether a top-level key needs the source's decoding.
func (s *state) special(key []byte) bool {
	switch s.src {
	case SourceKinesis:
		// "data" at the top level: a record already flattened the way
		// Pipes documents it.
		return string(key) == "kinesis" || string(key) == "data"
	case SourceSQS, SourceKafka, SourceMQ:
		return string(key) == s.src.DataKey()
	}
	return false
}

// payload handles a top-level key that special reported. ch is the key's
// trie node, root the record's.
func (s *state) payload(b []byte, j int, key []byte, ch, root *node) int {
	if s.src == SourceKinesis && string(key) == "kinesis" {
		// The Kinesis fields are matched both where they are
		// ("kinesis.partitionKey") and at the top level ("partitionKey",
		// "data"), which is how Lambda's documentation writes them.
		if b[j] != '{' {
			if ch == nil {
				return s.skip(b, j)
			}
			return s.value(b, j, ch, ctxNone)
		}
		if ch != nil && ch.hasKids() {
			s.object(b, j, ch, ctxKinesis)
			if s.err != nil || s.matched {
				return len(b)
			}
		}
		return s.object(b, j, root, ctxKinesis)
	}
	return s.decodeValue(b, j, ch, s.src != SourceSQS)
}

// decodeValue matches a payload field: base64 text (Kinesis, Kafka, MQ) or
// a string (SQS body) that is matched as JSON when it is a JSON object or
// array and as a string otherwise.
func (s *state) decodeValue(b []byte, j int, ch *node, b64 bool) int {
	if b[j] != '"' {
		if ch == nil {
			return s.skip(b, j)
		}
		return s.value(b, j, ch, ctxNone)
	}
	raw, next := s.str(b, j)
	if s.err != nil {
		return len(b)
	}
	if ch == nil {
		return next
	}
	var data []byte
	if b64 {
		need := base64.StdEncoding.DecodedLen(len(raw))
		if cap(s.dataBuf) < need {
			s.dataBuf = make([]byte, need)
		}
		n, err := base64.StdEncoding.Decode(s.dataBuf[:need], raw)
		if err != nil || !utf8.Valid(s.dataBuf[:n]) {
			s.data = dataUndecoded
			return next
		}
		data = s.dataBuf[:n]
	} else {
		// The string may live in strBuf, which scanning reuses: copy it.
		s.dataBuf = append(s.dataBuf[:0], raw...)
		data = s.dataBuf
	}
	k := skipWS(data, 0)
	if k < len(data) && (data[k] == '{' || data[k] == '[') && s.validJSON(data) {
		s.data = dataJSON
		s.value(data, k, ch, ctxNone)
		return next
	}
	s.data = dataPlain
	s.leaf(ch, 's', data)
	return next
}

func (s *state) array(b []byte, i int, n *node) int {
	s.depth++
	if s.depth > maxDepth {
		s.fail("nested deeper than %d", maxDepth)
		return len(b)
	}
	defer func() { s.depth-- }()
	if !n.scoped {
		return s.elements(b, i, n, false)
	}
	// Scoped array: evaluate each element in fresh bitsets, then record in
	// the enclosing scope which sub-rules some single element satisfied.
	w := s.m.words
	nr := len(n.scopeRules)
	need := 3*w + (nr+63)/64
	if s.slabTop+need > len(s.slab) {
		grown := make([]uint64, 2*(s.slabTop+need))
		copy(grown, s.slab[:s.slabTop])
		s.slab = grown // older scopes keep their own backing array
	}
	base := s.slabTop
	s.slabTop += need
	elemSat := s.slab[base : base+w : base+w]
	elemPres := s.slab[base+w : base+2*w : base+2*w]
	presAny := s.slab[base+2*w : base+3*w : base+3*w]
	done := s.slab[base+3*w : base+need : base+need]
	clear(presAny)
	clear(done)
	parentSat, parentPres := s.sat, s.pres
	s.sat, s.pres = elemSat, elemPres
	s.scopes++
	prev := s.frame
	s.frame = scopeFrame{n: n, done: done, presAny: presAny}
	j := s.elements(b, i, n, true)
	s.frame = prev
	s.scopes--
	s.sat, s.pres = parentSat, parentPres
	for k := range n.scopeRules {
		sr := &n.scopeRules[k]
		switch {
		case done[k/64]&(1<<(k%64)) != 0:
			for _, rw := range sr.words {
				s.sat[rw.w] |= rw.all
			}
		case sr.allAA && noneSet(presAny, sr.words):
			// Satisfied by absence throughout the array: nothing to record.
		default:
			for _, rw := range sr.words {
				s.pres[rw.w] |= rw.all
			}
		}
	}
	s.slabTop = base
	return j
}

func noneSet(bits []uint64, ws []ruleWord) bool {
	for _, rw := range ws {
		if bits[rw.w]&rw.all != 0 {
			return false
		}
	}
	return true
}

// elementSatisfies: some clause of the sub-rule matched a value in this
// element, and every clause below the array holds within it.
func (s *state) elementSatisfies(sr *scopeRule) bool {
	anchor := false
	for _, rw := range sr.words {
		sat := s.sat[rw.w]
		if sat&rw.all != 0 {
			anchor = true
		}
		if rw.all&^(sat|(rw.aa&^s.pres[rw.w])) != 0 {
			return false
		}
	}
	return anchor
}

// afterElement folds one element's bitsets into the open scoped array.
func (s *state) afterElement() {
	f := &s.frame
	for k := range f.n.scopeRules {
		if f.done[k/64]&(1<<(k%64)) != 0 {
			continue
		}
		if s.elementSatisfies(&f.n.scopeRules[k]) {
			f.done[k/64] |= 1 << (k % 64)
		}
	}
	for x := range f.presAny {
		f.presAny[x] |= s.pres[x]
	}
}

// elements scans the elements of the array at b[i]. For a scoped array
// each element starts with clear bitsets and is folded in afterwards.
func (s *state) elements(b []byte, i int, n *node, scoped bool) int {
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1
	}
	for i < len(b) {
		if scoped {
			clear(s.sat)
			clear(s.pres)
		}
		j := s.value(b, i, n, ctxNone)
		if s.err != nil || s.matched {
			return len(b)
		}
		if scoped {
			s.afterElement()
		}
		j = skipWS(b, j)
		if j < len(b) && b[j] == ',' {
			i = skipWS(b, j+1)
			continue
		}
		if j < len(b) && b[j] == ']' {
			return j + 1
		}
		s.fail("expected ',' or ']' at offset %d", j)
		return len(b)
	}
	s.fail("unterminated array")
	return len(b)
}
