package mongotest

import (
	"bytes"
	"cmp"
	"math"
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// This file holds BSON value helpers: numbers, MongoDB's cross-type
// ordering, dotted paths, and a small mutable document for updates. All of
// it works on validated BSON (parseMessage validated every request
// document) and uses the ...OK accessors, which cannot panic.

// asInt returns a whole number given as int32, int64 or an integral double.
func asInt(v bson.RawValue) (int64, bool) {
	switch v.Type {
	case bson.TypeInt32:
		i, ok := v.Int32OK()
		return int64(i), ok
	case bson.TypeInt64:
		return v.Int64OK()
	case bson.TypeDouble:
		f, ok := v.DoubleOK()
		if !ok || f != math.Trunc(f) || math.Abs(f) > 1<<62 {
			return 0, false
		}
		return int64(f), true
	}
	return 0, false
}

// truthy is MongoDB's truth for options such as multi, upsert and $exists:
// false, null, undefined and zero are false.
func truthy(v bson.RawValue) bool {
	switch v.Type {
	case bson.TypeBoolean:
		b, _ := v.BooleanOK()
		return b
	case bson.TypeNull, bson.TypeUndefined, 0:
		return false
	case bson.TypeInt32, bson.TypeInt64, bson.TypeDouble, bson.TypeDecimal128:
		f, ok := asFloat(v)
		return ok && f != 0
	}
	return true
}

func asFloat(v bson.RawValue) (float64, bool) {
	switch v.Type {
	case bson.TypeInt32, bson.TypeInt64, bson.TypeDouble:
		return bsoncore.Value{Type: bsoncore.Type(v.Type), Data: v.Value}.AsFloat64OK()
	case bson.TypeDecimal128:
		d, ok := v.Decimal128OK()
		if !ok {
			return 0, false
		}
		f, err := strconv.ParseFloat(d.String(), 64)
		if err != nil {
			return math.NaN(), true // NaN, Infinity spellings
		}
		return f, true
	}
	return 0, false
}

func isNumber(t bson.Type) bool {
	return t == bson.TypeInt32 || t == bson.TypeInt64 || t == bson.TypeDouble || t == bson.TypeDecimal128
}

// typeOrder is MongoDB's canonical order of BSON types for comparison
// (numbers compare with each other, strings with symbols).
func typeOrder(t bson.Type) int {
	switch t {
	case bson.TypeMinKey:
		return 0
	case bson.TypeNull, bson.TypeUndefined:
		return 1
	case bson.TypeInt32, bson.TypeInt64, bson.TypeDouble, bson.TypeDecimal128:
		return 2
	case bson.TypeString, bson.TypeSymbol:
		return 3
	case bson.TypeEmbeddedDocument:
		return 4
	case bson.TypeArray:
		return 5
	case bson.TypeBinary:
		return 6
	case bson.TypeObjectID:
		return 7
	case bson.TypeBoolean:
		return 8
	case bson.TypeDateTime:
		return 9
	case bson.TypeTimestamp:
		return 10
	case bson.TypeRegex:
		return 11
	case bson.TypeDBPointer:
		return 12
	case bson.TypeJavaScript:
		return 13
	case bson.TypeCodeWithScope:
		return 14
	case bson.TypeMaxKey:
		return 16
	}
	return 15
}

// compareValues orders two values as MongoDB does: first by canonical
// type, then by value (numbers by magnitude whatever their type).
func compareValues(a, b bson.RawValue) int {
	ta, tb := typeOrder(a.Type), typeOrder(b.Type)
	if ta != tb {
		return cmp.Compare(ta, tb)
	}
	switch ta {
	case 0, 1, 16:
		return 0
	case 2:
		return compareNumbers(a, b)
	case 3:
		return strings.Compare(stringOf(a), stringOf(b))
	case 4, 5:
		return compareDocs(a.Value, b.Value, ta == 5)
	case 6:
		sa, da, _ := a.BinaryOK()
		sb, db, _ := b.BinaryOK()
		if c := cmp.Compare(len(da), len(db)); c != 0 {
			return c
		}
		if c := cmp.Compare(sa, sb); c != 0 {
			return c
		}
		return bytes.Compare(da, db)
	case 8:
		x, _ := a.BooleanOK()
		y, _ := b.BooleanOK()
		return cmp.Compare(b2i(x), b2i(y))
	case 9:
		x, _ := a.DateTimeOK()
		y, _ := b.DateTimeOK()
		return cmp.Compare(x, y)
	case 10:
		t1, i1, _ := a.TimestampOK()
		t2, i2, _ := b.TimestampOK()
		if c := cmp.Compare(t1, t2); c != 0 {
			return c
		}
		return cmp.Compare(i1, i2)
	}
	// ObjectIDs compare bytewise; so, for lack of anything better, do the
	// rarer types.
	return bytes.Compare(a.Value, b.Value)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func stringOf(v bson.RawValue) string {
	if s, ok := v.StringValueOK(); ok {
		return s
	}
	s, _ := v.SymbolOK()
	return s
}

func compareNumbers(a, b bson.RawValue) int {
	if a.Type != bson.TypeDouble && a.Type != bson.TypeDecimal128 && b.Type != bson.TypeDouble && b.Type != bson.TypeDecimal128 {
		x, _ := asInt(a)
		y, _ := asInt(b)
		return cmp.Compare(x, y)
	}
	x, _ := asFloat(a)
	y, _ := asFloat(b)
	return cmp.Compare(x, y) // NaN sorts first and equals NaN, as in MongoDB
}

// compareDocs compares documents (or arrays) element by element: type,
// then field name (not for arrays), then value; a prefix sorts first.
func compareDocs(a, b []byte, array bool) int {
	ea, _ := bson.Raw(a).Elements()
	eb, _ := bson.Raw(b).Elements()
	for i := 0; i < len(ea) && i < len(eb); i++ {
		va, vb := ea[i].Value(), eb[i].Value()
		if c := cmp.Compare(typeOrder(va.Type), typeOrder(vb.Type)); c != 0 {
			return c
		}
		if !array {
			if c := strings.Compare(ea[i].Key(), eb[i].Key()); c != 0 {
				return c
			}
		}
		if c := compareValues(va, vb); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(ea), len(eb))
}

// valueOf marshals a Go value into a RawValue.
func valueOf(v any) bson.RawValue {
	t, data, err := bson.MarshalValue(v)
	if err != nil {
		panic("mongotest: " + err.Error()) // only called with encodable values
	}
	return bson.RawValue{Type: t, Value: data}
}

// idKey identifies an _id in a collection's index. Integral numbers of any
// type share a key, as 1 and 1.0 are the same _id to MongoDB.
func idKey(v bson.RawValue) string {
	if isNumber(v.Type) {
		if i, ok := asInt(v); ok {
			return "n" + strconv.FormatInt(i, 10)
		}
		if f, ok := asFloat(v); ok {
			return "f" + strconv.FormatFloat(f, 'g', -1, 64)
		}
	}
	if v.Type == bson.TypeString || v.Type == bson.TypeSymbol {
		return "s" + stringOf(v)
	}
	return string([]byte{byte(v.Type)}) + string(v.Value)
}

// splitPath splits a dotted path, rejecting empty components.
func splitPath(path string) ([]string, error) {
	parts := strings.Split(path, ".")
	for _, p := range parts {
		if p == "" {
			return nil, errorf(codeBadValue, "empty field name in path %q", path)
		}
	}
	return parts, nil
}

// pathValues returns the values a dotted path reaches, as a query sees
// them: arrays on the way are traversed element by element (or indexed by
// a numeric component), and an array at the end counts as itself and as
// each of its elements.
func pathValues(doc bson.Raw, path []string) []bson.RawValue {
	var out []bson.RawValue
	collectPath(bson.RawValue{Type: bson.TypeEmbeddedDocument, Value: doc}, path, &out, false)
	return out
}

func collectPath(v bson.RawValue, path []string, out *[]bson.RawValue, inArray bool) {
	if len(path) == 0 {
		*out = append(*out, v)
		if arr, ok := v.ArrayOK(); ok && !inArray {
			vals, _ := arr.Values()
			*out = append(*out, vals...)
		}
		return
	}
	switch v.Type {
	case bson.TypeEmbeddedDocument:
		d, _ := v.DocumentOK()
		if sub, err := d.LookupErr(path[0]); err == nil {
			collectPath(sub, path[1:], out, false)
		}
	case bson.TypeArray:
		arr, _ := v.ArrayOK()
		vals, _ := arr.Values()
		if i, err := strconv.Atoi(path[0]); err == nil && i >= 0 && i < len(vals) {
			collectPath(vals[i], path[1:], out, true)
		}
		for _, e := range vals {
			if e.Type == bson.TypeEmbeddedDocument {
				collectPath(e, path, out, true)
			}
		}
	}
}

// elem is one field of an mdoc.
type elem struct {
	key string
	val bson.RawValue
}

// mdoc is a document being changed by an update: top-level fields in
// order, values still raw. Nested documents are decoded on demand.
type mdoc []elem

func toMdoc(d bson.Raw) mdoc {
	elems, _ := d.Elements()
	m := make(mdoc, 0, len(elems))
	for _, e := range elems {
		m = append(m, elem{e.Key(), e.Value()})
	}
	return m
}

func (m mdoc) index(key string) int {
	for i, e := range m {
		if e.key == key {
			return i
		}
	}
	return -1
}

func (m mdoc) raw() bson.Raw {
	idx, dst := bsoncore.AppendDocumentStart(nil)
	for _, e := range m {
		dst = bsoncore.AppendValueElement(dst, e.key, bsoncore.Value{Type: bsoncore.Type(e.val.Type), Data: e.val.Value})
	}
	dst, _ = bsoncore.AppendDocumentEnd(dst, idx)
	return bson.Raw(dst)
}

func docValue(d bson.Raw) bson.RawValue {
	return bson.RawValue{Type: bson.TypeEmbeddedDocument, Value: d}
}

// get returns the value at a dotted path through embedded documents.
func (m mdoc) get(path []string) (bson.RawValue, bool) {
	i := m.index(path[0])
	if i < 0 {
		return bson.RawValue{}, false
	}
	if len(path) == 1 {
		return m[i].val, true
	}
	d, ok := m[i].val.DocumentOK()
	if !ok {
		return bson.RawValue{}, false
	}
	return toMdoc(d).get(path[1:])
}

// set stores v at a dotted path, creating embedded documents on the way.
// It returns the new document; m is not modified.
func (m mdoc) set(path []string, v bson.RawValue, full string) (mdoc, error) {
	m = append(mdoc(nil), m...)
	i := m.index(path[0])
	if len(path) == 1 {
		if i < 0 {
			return append(m, elem{path[0], v}), nil
		}
		m[i].val = v
		return m, nil
	}
	var sub mdoc
	if i >= 0 {
		switch m[i].val.Type {
		case bson.TypeEmbeddedDocument:
			d, _ := m[i].val.DocumentOK()
			sub = toMdoc(d)
		case bson.TypeArray:
			return nil, errorf(codeNotImplemented, "mongotest: update paths through arrays (%q) are not supported", full)
		default:
			return nil, errorf(codePathNotViable, "Cannot create field '%s' in element {%s: %s}", path[1], path[0], m[i].val.String())
		}
	}
	sub, err := sub.set(path[1:], v, full)
	if err != nil {
		return nil, err
	}
	if i < 0 {
		return append(m, elem{path[0], docValue(sub.raw())}), nil
	}
	m[i].val = docValue(sub.raw())
	return m, nil
}

// unset removes the field at a dotted path; missing fields are no error.
func (m mdoc) unset(path []string, full string) (mdoc, bool, error) {
	i := m.index(path[0])
	if i < 0 {
		return m, false, nil
	}
	if len(path) == 1 {
		return append(append(mdoc(nil), m[:i]...), m[i+1:]...), true, nil
	}
	switch m[i].val.Type {
	case bson.TypeEmbeddedDocument:
	case bson.TypeArray:
		return nil, false, errorf(codeNotImplemented, "mongotest: update paths through arrays (%q) are not supported", full)
	default:
		return m, false, nil
	}
	d, _ := m[i].val.DocumentOK()
	sub, removed, err := toMdoc(d).unset(path[1:], full)
	if err != nil || !removed {
		return m, false, err
	}
	m = append(mdoc(nil), m...)
	m[i].val = docValue(sub.raw())
	return m, true, nil
}

// sameValue reports byte-identical values of the same type: what makes a
// $set a no-op (1 and 1.0 differ here, as in MongoDB).
func sameValue(a, b bson.RawValue) bool {
	return a.Type == b.Type && bytes.Equal(a.Value, b.Value)
}
