package mongotest

import (
	"slices"
	"sort"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// query selects documents as find does. Callers hold s.mu.
func (s *Server) query(db, name string, filter, sortSpec bson.Raw, skip, limit int64) ([]bson.Raw, error) {
	var out []bson.Raw
	if c := s.coll(db, name, false); c != nil {
		for _, d := range c.docs {
			ok, err := matches(d, filter)
			if err != nil {
				return nil, err
			}
			if ok {
				out = append(out, d)
			}
		}
	}
	if err := sortDocs(out, sortSpec); err != nil {
		return nil, err
	}
	if skip > 0 {
		out = out[min(int(skip), len(out)):]
	}
	if limit > 0 && int(limit) < len(out) {
		out = out[:limit]
	}
	return out, nil
}

// sortDocs sorts by a {field: 1 | -1, ...} specification (stable, so
// ties keep natural order); {$natural: 1} is natural order.
func sortDocs(docs []bson.Raw, spec bson.Raw) error {
	if len(spec) == 0 {
		return nil
	}
	type key struct {
		path []string
		dir  int
	}
	var keys []key
	elems, _ := spec.Elements()
	for _, e := range elems {
		dir, ok := asInt(e.Value())
		if !ok || dir != 1 && dir != -1 {
			return errorf(codeBadValue, "mongotest: sort direction for %s must be 1 or -1", e.Key())
		}
		if e.Key() == "$natural" {
			if dir == -1 {
				slices.Reverse(docs)
			}
			continue
		}
		path, err := splitPath(e.Key())
		if err != nil {
			return err
		}
		keys = append(keys, key{path, int(dir)})
	}
	first := func(d bson.Raw, path []string) bson.RawValue {
		if vals := pathValues(d, path); len(vals) > 0 {
			return vals[0]
		}
		return bson.RawValue{Type: bson.TypeNull}
	}
	sort.SliceStable(docs, func(i, j int) bool {
		for _, k := range keys {
			if c := compareValues(first(docs[i], k.path), first(docs[j], k.path)); c != 0 {
				return c*k.dir < 0
			}
		}
		return false
	})
	return nil
}

// project applies a top-level inclusion or exclusion projection.
func project(docs []bson.Raw, spec bson.Raw) ([]bson.Raw, error) {
	if len(spec) == 0 {
		return docs, nil
	}
	elems, _ := spec.Elements()
	fields := map[string]bool{}
	includeID, mode := true, 0 // mode 1 inclusion, -1 exclusion
	for _, e := range elems {
		k, v := e.Key(), e.Value()
		if strings.ContainsAny(k, ".$") || !(v.Type == bson.TypeBoolean || isNumber(v.Type)) {
			return nil, errorf(codeNotImplemented, "mongotest: only top-level inclusion or exclusion projections are supported, not %s: %s", k, v)
		}
		in := truthy(v)
		if k == "_id" {
			includeID = in
			continue
		}
		m := map[bool]int{true: 1, false: -1}[in]
		if mode != 0 && mode != m {
			return nil, errorf(codeBadValue, "Cannot do inclusion and exclusion in the same projection")
		}
		mode = m
		fields[k] = true
	}
	out := make([]bson.Raw, 0, len(docs))
	for _, d := range docs {
		var m mdoc
		for _, e := range toMdoc(d) {
			keep := mode >= 0 && fields[e.key] || mode < 0 && !fields[e.key]
			if e.key == "_id" {
				keep = includeID
			}
			if keep {
				m = append(m, e)
			}
		}
		out = append(out, m.raw())
	}
	return out, nil
}

// lookupDoc returns an optional document field (nil when absent or null).
func lookupDoc(d bson.Raw, key string) (bson.Raw, error) {
	v, err := d.LookupErr(key)
	if err != nil || v.Type == bson.TypeNull {
		return nil, nil
	}
	doc, ok := v.DocumentOK()
	if !ok {
		return nil, errorf(codeTypeMismatch, "BSON field '%s' is the wrong type '%s', expected type 'object'", key, v.Type)
	}
	return doc, nil
}

// lookupInt returns an optional whole-number field and whether it is set.
func lookupInt(d bson.Raw, key string) (int64, bool, error) {
	v, err := d.LookupErr(key)
	if err != nil || v.Type == bson.TypeNull {
		return 0, false, nil
	}
	n, ok := asInt(v)
	if !ok {
		return 0, false, errorf(codeTypeMismatch, "BSON field '%s' must be a whole number, not %s", key, v)
	}
	return n, true, nil
}

// defaultBatch is the first batch size of a cursor when the client names
// none, as mongod's.
const defaultBatch = 101

func cmdFind(s *Server, _ *conn, req *request) (bson.D, error) {
	name, err := collArg(req)
	if err != nil {
		return nil, err
	}
	filter, err := lookupDoc(req.body, "filter")
	if err != nil {
		return nil, err
	}
	sortSpec, err := lookupDoc(req.body, "sort")
	if err != nil {
		return nil, err
	}
	proj, err := lookupDoc(req.body, "projection")
	if err != nil {
		return nil, err
	}
	for _, k := range []string{"collation", "min", "max", "tailable", "awaitData"} {
		if v, err := req.body.LookupErr(k); err == nil && truthy(v) {
			return nil, errorf(codeNotImplemented, "mongotest: find with %s is not supported", k)
		}
	}
	skip, _, err := lookupInt(req.body, "skip")
	if err != nil {
		return nil, err
	}
	limit, _, err := lookupInt(req.body, "limit")
	if err != nil {
		return nil, err
	}
	batch, hasBatch, err := lookupInt(req.body, "batchSize")
	if err != nil {
		return nil, err
	}
	if skip < 0 || limit < 0 || batch < 0 {
		return nil, errorf(codeBadValue, "skip, limit and batchSize must not be negative")
	}
	if !hasBatch {
		batch = defaultBatch
	}
	single := truthy(req.body.Lookup("singleBatch"))
	s.mu.Lock()
	defer s.mu.Unlock()
	docs, err := s.query(req.db, name, filter, sortSpec, skip, limit)
	if err != nil {
		return nil, err
	}
	if docs, err = project(docs, proj); err != nil {
		return nil, err
	}
	return s.docCursor(req.db+"."+name, docs, int(batch), single), nil
}

// docCursor answers with a first batch and keeps the rest in a cursor.
// Callers hold s.mu.
func (s *Server) docCursor(ns string, docs []bson.Raw, batch int, single bool) bson.D {
	first, rest := splitBatch(docs, batch)
	var id int64
	if len(rest) > 0 && !single {
		id = s.newCursor(&cursor{ns: ns, docs: rest})
	}
	return cursorReply("firstBatch", first, id, ns, pos{})
}

// splitBatch cuts a batch of at most n documents (n < 0: any number) and
// 16 MB.
func splitBatch(docs []bson.Raw, n int) (batch, rest []bson.Raw) {
	size := 0
	for i, d := range docs {
		if n >= 0 && i >= n || i > 0 && size+len(d) > maxBatchBytes {
			return docs[:i], docs[i:]
		}
		size += len(d)
	}
	return docs, nil
}

func cmdCount(s *Server, _ *conn, req *request) (bson.D, error) {
	name, err := collArg(req)
	if err != nil {
		return nil, err
	}
	filter, err := lookupDoc(req.body, "query")
	if err != nil {
		return nil, err
	}
	skip, _, err := lookupInt(req.body, "skip")
	if err != nil {
		return nil, err
	}
	limit, _, err := lookupInt(req.body, "limit")
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	docs, err := s.query(req.db, name, filter, nil, max(skip, 0), max(limit, 0))
	if err != nil {
		return nil, err
	}
	return bson.D{{Key: "n", Value: int32(len(docs))}}, nil
}

// aggregateColl runs a pipeline on a collection: $match, $sort, $skip,
// $limit, $project, $count, and a $group with a constant _id and $sum
// accumulators of constants (what CountDocuments sends).
func (s *Server) aggregateColl(req *request, name string, stages []bson.Raw, batch int) (bson.D, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	docs, err := s.query(req.db, name, nil, nil, 0, 0)
	if err != nil {
		return nil, err
	}
	docs = slices.Clone(docs)
	for _, stage := range stages {
		elems := mustElements(stage)
		if len(elems) != 1 {
			return nil, errorf(codeInvalidPipelineStage, "A pipeline stage specification object must contain exactly one field.")
		}
		op, arg := elems[0].Key(), elems[0].Value()
		switch op {
		case "$match", "$sort", "$project":
			spec, ok := arg.DocumentOK()
			if !ok {
				return nil, errorf(codeFailedToParse, "%s specification must be an object", op)
			}
			switch op {
			case "$match":
				var out []bson.Raw
				for _, d := range docs {
					ok, err := matches(d, spec)
					if err != nil {
						return nil, err
					}
					if ok {
						out = append(out, d)
					}
				}
				docs = out
			case "$sort":
				err = sortDocs(docs, spec)
			case "$project":
				docs, err = project(docs, spec)
			}
			if err != nil {
				return nil, err
			}
		case "$skip", "$limit":
			n, ok := asInt(arg)
			if !ok || n < 0 || op == "$limit" && n == 0 {
				return nil, errorf(codeFailedToParse, "invalid argument to %s stage: %s", op, arg)
			}
			if op == "$skip" {
				docs = docs[min(int(n), len(docs)):]
			} else if int(n) < len(docs) {
				docs = docs[:n]
			}
		case "$count":
			field, ok := arg.StringValueOK()
			if !ok || field == "" || strings.ContainsAny(field, ".$") {
				return nil, errorf(codeFailedToParse, "the count field must be a non-empty string without '.' or '$'")
			}
			out := []bson.Raw{}
			if len(docs) > 0 {
				d, _ := bson.Marshal(bson.D{{Key: field, Value: int32(len(docs))}})
				out = append(out, d)
			}
			docs = out
		case "$group":
			spec, ok := arg.DocumentOK()
			if !ok {
				return nil, errorf(codeFailedToParse, "a group's fields must be specified in an object")
			}
			if docs, err = groupConst(docs, spec); err != nil {
				return nil, err
			}
		case "$changeStream":
			return nil, errorf(codeInvalidPipelineStage, "$changeStream is only valid as the first stage in a pipeline")
		default:
			return nil, errorf(codeNotImplemented, "mongotest: aggregation stage %s is not supported", op)
		}
	}
	return s.docCursor(req.db+"."+name, docs, batch, false), nil
}

// groupConst is $group with a constant _id: one output document (none for
// no input), each other field {$sum: <number>}.
func groupConst(docs []bson.Raw, spec bson.Raw) ([]bson.Raw, error) {
	out := bson.D{}
	for _, e := range mustElements(spec) {
		k, v := e.Key(), e.Value()
		if k == "_id" {
			if s, ok := v.StringValueOK(); ok && strings.HasPrefix(s, "$") || v.Type == bson.TypeEmbeddedDocument {
				return nil, errorf(codeNotImplemented, "mongotest: $group supports only a constant _id")
			}
			out = append(out, bson.E{Key: "_id", Value: v})
			continue
		}
		acc, ok := v.DocumentOK()
		n := acc.Lookup("$sum")
		if !ok || len(mustElements(acc)) != 1 || !isNumber(n.Type) {
			return nil, errorf(codeNotImplemented, "mongotest: $group supports only {$sum: <number>} accumulators, not %s: %s", k, v)
		}
		if i, ok := asInt(n); ok {
			out = append(out, bson.E{Key: k, Value: int32(int64(len(docs)) * i)})
		} else {
			f, _ := asFloat(n)
			out = append(out, bson.E{Key: k, Value: float64(len(docs)) * f})
		}
	}
	if len(docs) == 0 {
		return []bson.Raw{}, nil
	}
	d, err := bson.Marshal(out)
	if err != nil {
		return nil, err
	}
	return []bson.Raw{d}, nil
}
