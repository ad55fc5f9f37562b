package mongotest

import (
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// matches reports whether doc satisfies a query filter. It supports field
// equality, $eq, $ne, $gt, $gte, $lt, $lte, $in, $nin, $exists, $not,
// $and, $or, $nor and $comment; anything else is an error, never a silent
// mismatch.
func matches(doc, filter bson.Raw) (bool, error) {
	elems, err := filter.Elements()
	if err != nil {
		return false, errorf(codeBadValue, "malformed filter: %v", err)
	}
	for _, e := range elems {
		ok, err := matchElem(doc, e.Key(), e.Value())
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

func matchElem(doc bson.Raw, key string, v bson.RawValue) (bool, error) {
	switch key {
	case "$and", "$or", "$nor":
		arr, ok := v.ArrayOK()
		subs, _ := arr.Values()
		if !ok || len(subs) == 0 {
			return false, errorf(codeBadValue, "%s must be a nonempty array", key)
		}
		for _, sub := range subs {
			f, ok := sub.DocumentOK()
			if !ok {
				return false, errorf(codeBadValue, "%s entries need to be full objects", key)
			}
			m, err := matches(doc, f)
			if err != nil {
				return false, err
			}
			switch {
			case key == "$and" && !m:
				return false, nil
			case key == "$or" && m:
				return true, nil
			case key == "$nor" && m:
				return false, nil
			}
		}
		return key != "$or", nil
	case "$comment":
		return true, nil
	}
	if strings.HasPrefix(key, "$") {
		return false, errorf(codeBadValue, "mongotest: unsupported top level operator %s", key)
	}
	path, err := splitPath(key)
	if err != nil {
		return false, err
	}
	vals := pathValues(doc, path)
	if isOperatorDoc(v) {
		d, _ := v.DocumentOK()
		return matchOps(vals, d)
	}
	return matchEq(vals, v)
}

// isOperatorDoc reports a {$op: ...} condition (as opposed to equality
// with an embedded document).
func isOperatorDoc(v bson.RawValue) bool {
	d, ok := v.DocumentOK()
	if !ok {
		return false
	}
	e, err := d.IndexErr(0)
	return err == nil && strings.HasPrefix(e.Key(), "$")
}

func matchOps(vals []bson.RawValue, ops bson.Raw) (bool, error) {
	elems, _ := ops.Elements()
	for _, e := range elems {
		ok, err := matchOp(vals, e.Key(), e.Value())
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

func matchOp(vals []bson.RawValue, op string, arg bson.RawValue) (bool, error) {
	switch op {
	case "$eq":
		return matchEq(vals, arg)
	case "$ne":
		m, err := matchEq(vals, arg)
		return !m, err
	case "$gt", "$gte", "$lt", "$lte":
		if arg.Type == bson.TypeRegex {
			return false, errorf(codeBadValue, "mongotest: regular expressions are not supported")
		}
		for _, v := range vals {
			if typeOrder(v.Type) != typeOrder(arg.Type) {
				continue // type bracketing: 5 is not $gt "a"
			}
			c := compareValues(v, arg)
			if op == "$gt" && c > 0 || op == "$gte" && c >= 0 || op == "$lt" && c < 0 || op == "$lte" && c <= 0 {
				return true, nil
			}
		}
		return false, nil
	case "$in", "$nin":
		arr, ok := arg.ArrayOK()
		if !ok {
			return false, errorf(codeBadValue, "%s needs an array", op)
		}
		cands, _ := arr.Values()
		in := false
		for _, c := range cands {
			m, err := matchEq(vals, c)
			if err != nil {
				return false, err
			}
			if m {
				in = true
				break
			}
		}
		return in == (op == "$in"), nil
	case "$exists":
		return (len(vals) > 0) == truthy(arg), nil
	case "$not":
		d, ok := arg.DocumentOK()
		if !ok || !isOperatorDoc(arg) {
			return false, errorf(codeBadValue, "$not needs a document of operators")
		}
		m, err := matchOps(vals, d)
		return !m, err
	}
	return false, errorf(codeBadValue, "mongotest: unsupported query operator %s", op)
}

// matchEq is equality as a query means it: null also matches a missing
// field; an array field matches a value equal to one of its elements.
func matchEq(vals []bson.RawValue, want bson.RawValue) (bool, error) {
	if want.Type == bson.TypeRegex {
		return false, errorf(codeBadValue, "mongotest: regular expressions are not supported")
	}
	if want.Type == bson.TypeNull {
		if len(vals) == 0 {
			return true, nil
		}
	}
	for _, v := range vals {
		if typeOrder(v.Type) == typeOrder(want.Type) && compareValues(v, want) == 0 {
			return true, nil
		}
	}
	return false, nil
}
