package mongotest

import (
	"math"
	"slices"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// collection holds documents in insertion (natural) order, each stored
// with _id first. Guarded by Server.mu.
type collection struct {
	docs []bson.Raw
	ids  map[string]struct{}
}

func docID(d bson.Raw) bson.RawValue {
	e, err := d.IndexErr(0)
	if err != nil {
		return bson.RawValue{}
	}
	return e.Value()
}

// coll returns a collection, creating it (and its database) if create.
func (s *Server) coll(db, name string, create bool) *collection {
	colls := s.dbs[db]
	if colls == nil {
		if !create {
			return nil
		}
		colls = map[string]*collection{}
		s.dbs[db] = colls
	}
	c := colls[name]
	if c == nil && create {
		c = &collection{ids: map[string]struct{}{}}
		colls[name] = c
	}
	return c
}

// findByID returns a document by _id. Callers hold s.mu.
func (s *Server) findByID(db, name string, id bson.RawValue) (bson.Raw, bool) {
	c := s.coll(db, name, false)
	if c == nil {
		return nil, false
	}
	key := idKey(id)
	if _, ok := c.ids[key]; !ok {
		return nil, false
	}
	for _, d := range c.docs {
		if idKey(docID(d)) == key {
			return d, true
		}
	}
	return nil, false
}

func checkDBName(db string) error {
	if db == "" || len(db) > 63 || strings.ContainsAny(db, "/\\. \"$\x00") {
		return errorf(codeInvalidNamespace, "Invalid database name: '%s'", db)
	}
	return nil
}

func checkCollName(name string) error {
	if name == "" || strings.ContainsAny(name, "$\x00") || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "system.") {
		return errorf(codeInvalidNamespace, "Invalid collection name: %s", name)
	}
	return nil
}

// collArg returns the collection a command names as its first value.
func collArg(req *request) (string, error) {
	name, ok := docFirst(req.body).StringValueOK()
	if !ok {
		return "", errorf(codeInvalidNamespace, "collection name has invalid type %s", docFirst(req.body).Type)
	}
	if err := checkDBName(req.db); err != nil {
		return "", err
	}
	return name, checkCollName(name)
}

func docFirst(d bson.Raw) bson.RawValue {
	e, err := d.IndexErr(0)
	if err != nil {
		return bson.RawValue{}
	}
	return e.Value()
}

// docsArg returns the documents of a write command: a document-sequence
// section or an array field of the body.
func docsArg(req *request, field string) ([]bson.Raw, error) {
	if seq, ok := req.seqs[field]; ok {
		if _, dup := req.body.LookupErr(field); dup == nil {
			return nil, errorf(codeBadValue, "duplicate field %s in body and document sequence", field)
		}
		return seq, nil
	}
	arr, ok := req.body.Lookup(field).ArrayOK()
	if !ok {
		return nil, errorf(codeFailedToParse, "BSON field '%s.%s' is missing or not an array", req.name, field)
	}
	vals, _ := arr.Values()
	docs := make([]bson.Raw, 0, len(vals))
	for _, v := range vals {
		d, ok := v.DocumentOK()
		if !ok {
			return nil, errorf(codeTypeMismatch, "BSON field '%s.%s' must hold documents", req.name, field)
		}
		docs = append(docs, d)
	}
	return docs, nil
}

func writeError(i int, err error) bson.D {
	ce := asCmdError(err)
	d := bson.D{{Key: "index", Value: int32(i)}, {Key: "code", Value: ce.code}, {Key: "errmsg", Value: ce.msg}}
	return d
}

func asCmdError(err error) *cmdError {
	if ce, ok := err.(*cmdError); ok {
		return ce
	}
	return errorf(codeOperationFailed, "%v", err)
}

// writeReply is a write command's answer: counts, then writeErrors.
func writeReply(n int, extra bson.D, werrs bson.A) bson.D {
	d := append(bson.D{{Key: "n", Value: int32(n)}}, extra...)
	if len(werrs) > 0 {
		d = append(d, bson.E{Key: "writeErrors", Value: werrs})
	}
	return d
}

func cmdInsert(s *Server, _ *conn, req *request) (bson.D, error) {
	name, err := collArg(req)
	if err != nil {
		return nil, err
	}
	docs, err := docsArg(req, "documents")
	if err != nil {
		return nil, err
	}
	ordered := !hasFalse(req.body, "ordered")
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	var werrs bson.A
	for i, d := range docs {
		if _, err := s.insertOne(req.db, name, d); err != nil {
			werrs = append(werrs, writeError(i, err))
			if ordered {
				break
			}
			continue
		}
		n++
	}
	return writeReply(n, nil, werrs), nil
}

func hasFalse(d bson.Raw, key string) bool {
	v, err := d.LookupErr(key)
	return err == nil && !truthy(v)
}

// insertOne stores a document, _id first (a new ObjectID when absent),
// and logs an insert. Callers hold s.mu.
func (s *Server) insertOne(db, name string, d bson.Raw) (bson.Raw, error) {
	m := toMdoc(d)
	switch i := m.index("_id"); {
	case i < 0:
		m = append(mdoc{{"_id", valueOf(bson.NewObjectID())}}, m...)
	case i > 0:
		id := m[i]
		m = append(mdoc{id}, append(m[:i:i], m[i+1:]...)...)
	}
	id := m[0].val
	switch id.Type {
	case bson.TypeArray, bson.TypeRegex, bson.TypeUndefined:
		return nil, errorf(codeBadValue, "can't use a %s for _id", id.Type)
	}
	doc := m.raw()
	if len(doc) > MaxDocumentSize {
		return nil, errorf(codeBadValue, "object to insert too large. size in bytes: %d, max size: %d", len(doc), MaxDocumentSize)
	}
	c := s.coll(db, name, true)
	key := idKey(id)
	if _, dup := c.ids[key]; dup {
		return nil, errorf(codeDuplicateKey, "E11000 duplicate key error collection: %s.%s index: _id_ dup key: { _id: %s }", db, name, id)
	}
	c.ids[key] = struct{}{}
	c.docs = append(c.docs, doc)
	s.appendEntry(&entry{op: "insert", db: db, coll: name, id: id, doc: doc})
	return doc, nil
}

func cmdUpdate(s *Server, _ *conn, req *request) (bson.D, error) {
	name, err := collArg(req)
	if err != nil {
		return nil, err
	}
	updates, err := docsArg(req, "updates")
	if err != nil {
		return nil, err
	}
	ordered := !hasFalse(req.body, "ordered")
	s.mu.Lock()
	defer s.mu.Unlock()
	var matched, modified int
	var upserted, werrs bson.A
	for i, u := range updates {
		r, err := s.updateStatement(req.db, name, u)
		matched += r.matched
		modified += r.modified
		if r.upserted.Type != 0 {
			upserted = append(upserted, bson.D{{Key: "index", Value: int32(i)}, {Key: "_id", Value: r.upserted}})
			matched++ // n counts upserts too
		}
		if err != nil {
			werrs = append(werrs, writeError(i, err))
			if ordered {
				break
			}
		}
	}
	extra := bson.D{{Key: "nModified", Value: int32(modified)}}
	if len(upserted) > 0 {
		extra = append(extra, bson.E{Key: "upserted", Value: upserted})
	}
	return writeReply(matched, extra, werrs), nil
}

type updateResult struct {
	matched, modified int
	upserted          bson.RawValue
}

// updateStatement runs one {q, u, multi, upsert} statement. Callers hold
// s.mu.
func (s *Server) updateStatement(db, name string, stmt bson.Raw) (updateResult, error) {
	var r updateResult
	q, ok := stmt.Lookup("q").DocumentOK()
	if !ok {
		return r, errorf(codeFailedToParse, "BSON field 'update.updates.q' is missing or not an object")
	}
	uv := stmt.Lookup("u")
	if uv.Type == bson.TypeArray {
		return r, errorf(codeNotImplemented, "mongotest: pipeline-style updates are not supported")
	}
	u, ok := uv.DocumentOK()
	if !ok {
		return r, errorf(codeFailedToParse, "BSON field 'update.updates.u' is missing or not an object")
	}
	for _, k := range []string{"arrayFilters", "collation"} {
		if _, err := stmt.LookupErr(k); err == nil {
			return r, errorf(codeNotImplemented, "mongotest: %s is not supported", k)
		}
	}
	multi, upsert := truthy(stmt.Lookup("multi")), truthy(stmt.Lookup("upsert"))
	isOp := isOperatorDoc(docValue(u))
	if err := checkUpdateDoc(u, isOp); err != nil {
		return r, err
	}
	if !isOp && multi {
		return r, errorf(codeFailedToParse, "multi update is not supported for replacement-style update")
	}
	if c := s.coll(db, name, false); c != nil {
		for i := 0; i < len(c.docs); i++ {
			old := c.docs[i]
			ok, err := matches(old, q)
			if err != nil {
				return r, err
			}
			if !ok {
				continue
			}
			r.matched++
			e, err := applyUpdate(old, u, isOp, false)
			if err != nil {
				return r, err
			}
			if e != nil {
				c.docs[i] = e.doc
				r.modified++
				e.db, e.coll, e.id = db, name, docID(old)
				if e.op == "update" {
					e.doc = nil
				}
				s.appendEntry(e)
			}
			if !multi {
				break
			}
		}
	}
	if r.matched > 0 || !upsert {
		return r, nil
	}
	base, err := upsertBase(q)
	if err != nil {
		return r, err
	}
	var doc bson.Raw
	if isOp {
		e, err := applyUpdate(base.raw(), u, true, true)
		if err != nil {
			return r, err
		}
		doc = base.raw()
		if e != nil {
			doc = e.doc
		}
	} else {
		doc = u
		if i := base.index("_id"); i >= 0 {
			if _, err := u.LookupErr("_id"); err != nil {
				doc = append(mdoc{base[i]}, toMdoc(u)...).raw()
			}
		}
	}
	doc, err = s.insertOne(db, name, doc)
	if err != nil {
		return r, err
	}
	r.upserted = docID(doc)
	return r, nil
}

func checkUpdateDoc(u bson.Raw, isOp bool) error {
	elems, _ := u.Elements()
	for _, e := range elems {
		if strings.HasPrefix(e.Key(), "$") != isOp {
			if isOp {
				return errorf(codeFailedToParse, "Unknown modifier: %s. Expected a valid update modifier or pipeline-style update specified as an array", e.Key())
			}
			return errorf(codeFailedToParse, "The dollar ($) prefixed field '%s' in '%s' is not allowed in a replacement document", e.Key(), e.Key())
		}
	}
	return nil
}

// upsertBase is the document an upsert starts from: the equality
// conditions of its query.
func upsertBase(q bson.Raw) (mdoc, error) {
	var m mdoc
	elems, _ := q.Elements()
	for _, e := range elems {
		k, v := e.Key(), e.Value()
		if strings.HasPrefix(k, "$") {
			continue
		}
		if isOperatorDoc(v) {
			d, _ := v.DocumentOK()
			eq, err := d.LookupErr("$eq")
			if err != nil {
				continue
			}
			v = eq
		}
		path, err := splitPath(k)
		if err != nil {
			return nil, err
		}
		if m, err = m.set(path, v, k); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// applyUpdate applies an update (operators or a replacement) to old and
// returns the log entry it makes (op "update" or "replace", doc the new
// document), or nil when nothing changed. inserting applies $setOnInsert.
func applyUpdate(old, u bson.Raw, isOp, inserting bool) (*entry, error) {
	m := toMdoc(old)
	if !isOp {
		repl := toMdoc(u)
		oldID, hasOld := m.get([]string{"_id"})
		if i := repl.index("_id"); i >= 0 {
			if hasOld && compareValues(repl[i].val, oldID) != 0 {
				return nil, errorf(codeImmutableField, "After applying the update, the (immutable) field '_id' was found to have been altered to _id: %s", repl[i].val)
			}
			repl = append(repl[:i:i], repl[i+1:]...)
		}
		if hasOld {
			repl = append(mdoc{{"_id", oldID}}, repl...)
		}
		doc := repl.raw()
		if len(doc) > MaxDocumentSize {
			return nil, errorf(codeBSONObjectTooLarge, "Resulting document after update is larger than %d", MaxDocumentSize)
		}
		if string(doc) == string(old) {
			return nil, nil
		}
		return &entry{op: "replace", doc: doc}, nil
	}
	var (
		updated mdoc
		removed []string
		paths   []string
	)
	ops, _ := u.Elements()
	for _, op := range ops {
		name := op.Key()
		switch name {
		case "$set", "$unset", "$inc", "$setOnInsert":
		default:
			return nil, errorf(codeFailedToParse, "mongotest: unsupported update operator %s (supported: $set, $unset, $inc, $setOnInsert)", name)
		}
		spec, ok := op.Value().DocumentOK()
		if !ok {
			return nil, errorf(codeFailedToParse, "Modifiers operate on fields but we found type %s instead.", op.Value().Type)
		}
		fields, _ := spec.Elements()
		for _, f := range fields {
			p, v := f.Key(), f.Value()
			path, err := splitPath(p)
			if err != nil {
				return nil, err
			}
			for _, q := range paths {
				if q == p || strings.HasPrefix(q, p+".") || strings.HasPrefix(p, q+".") {
					return nil, errorf(codeConflictingUpdateOperator, "Updating the path '%s' would create a conflict at '%s'", p, q)
				}
			}
			paths = append(paths, p)
			if name == "$setOnInsert" && !inserting {
				continue
			}
			cur, exists := m.get(path)
			if path[0] == "_id" && !inserting {
				if name == "$set" && exists && sameValue(cur, v) {
					continue
				}
				return nil, errorf(codeImmutableField, "Performing an update on the path '%s' would modify the immutable field '_id'", p)
			}
			switch name {
			case "$unset":
				var ok bool
				if m, ok, err = m.unset(path, p); err != nil {
					return nil, err
				}
				if ok {
					removed = append(removed, p)
				}
				continue
			case "$inc":
				if !isNumber(v.Type) {
					return nil, errorf(codeTypeMismatch, "Cannot increment with non-numeric argument: {%s: %s}", p, v)
				}
				if exists {
					if !isNumber(cur.Type) {
						return nil, errorf(codeTypeMismatch, "Cannot apply $inc to a value of non-numeric type. {_id: %s} has the field '%s' of non-numeric type %s", docID(old), p, cur.Type)
					}
					if v, err = addNumbers(cur, v); err != nil {
						return nil, err
					}
				}
			}
			if exists && sameValue(cur, v) {
				continue
			}
			if m, err = m.set(path, v, p); err != nil {
				return nil, err
			}
			updated = append(updated, elem{p, v})
		}
	}
	if len(updated) == 0 && len(removed) == 0 {
		return nil, nil
	}
	doc := m.raw()
	if len(doc) > MaxDocumentSize {
		return nil, errorf(codeBSONObjectTooLarge, "Resulting document after update is larger than %d", MaxDocumentSize)
	}
	return &entry{op: "update", doc: doc, updated: updated.raw(), removed: removed}, nil
}

// addNumbers is $inc's sum: int32 stays int32 unless it overflows, then
// int64; a double makes a double.
func addNumbers(a, b bson.RawValue) (bson.RawValue, error) {
	if a.Type == bson.TypeDecimal128 || b.Type == bson.TypeDecimal128 {
		return bson.RawValue{}, errorf(codeNotImplemented, "mongotest: $inc on decimal128 is not supported")
	}
	if a.Type == bson.TypeDouble || b.Type == bson.TypeDouble {
		x, _ := asFloat(a)
		y, _ := asFloat(b)
		return valueOf(x + y), nil
	}
	x, _ := asInt(a)
	y, _ := asInt(b)
	sum := x + y
	if (sum > x) != (y > 0) {
		return bson.RawValue{}, errorf(codeBadValue, "Failed to apply $inc operations to current value ((%s)%d) for document {_id: ...}", a.Type, x)
	}
	if a.Type == bson.TypeInt32 && b.Type == bson.TypeInt32 && sum >= math.MinInt32 && sum <= math.MaxInt32 {
		return valueOf(int32(sum)), nil
	}
	return valueOf(sum), nil
}

func cmdDelete(s *Server, _ *conn, req *request) (bson.D, error) {
	name, err := collArg(req)
	if err != nil {
		return nil, err
	}
	deletes, err := docsArg(req, "deletes")
	if err != nil {
		return nil, err
	}
	ordered := !hasFalse(req.body, "ordered")
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	var werrs bson.A
	for i, stmt := range deletes {
		k, err := s.deleteStatement(req.db, name, stmt)
		n += k
		if err != nil {
			werrs = append(werrs, writeError(i, err))
			if ordered {
				break
			}
		}
	}
	return writeReply(n, nil, werrs), nil
}

func (s *Server) deleteStatement(db, name string, stmt bson.Raw) (int, error) {
	q, ok := stmt.Lookup("q").DocumentOK()
	if !ok {
		return 0, errorf(codeFailedToParse, "BSON field 'delete.deletes.q' is missing or not an object")
	}
	limit, ok := asInt(stmt.Lookup("limit"))
	if !ok || limit != 0 && limit != 1 {
		return 0, errorf(codeFailedToParse, "The limit field in delete objects must be 0 or 1. Got %s", stmt.Lookup("limit"))
	}
	c := s.coll(db, name, false)
	if c == nil {
		return 0, nil
	}
	n := 0
	for i := 0; i < len(c.docs); i++ {
		d := c.docs[i]
		ok, err := matches(d, q)
		if err != nil {
			return n, err
		}
		if !ok {
			continue
		}
		id := docID(d)
		c.docs = slices.Delete(c.docs, i, i+1)
		delete(c.ids, idKey(id))
		i--
		n++
		s.appendEntry(&entry{op: "delete", db: db, coll: name, id: id})
		if limit == 1 {
			break
		}
	}
	return n, nil
}
