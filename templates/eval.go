package templates

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Bounds on what one template may make the evaluator do: aliases and
// intrinsics can make a small file describe a huge value.
const (
	maxSteps = 1 << 17 // nodes evaluated
	maxDepth = 200     // nesting of nodes and intrinsics
	maxValue = 1 << 20 // bytes of one string a Sub, Join or variable builds
)

// noValue is what AWS::NoValue evaluates to: the member or list item that
// holds it is removed.
type noValueType struct{}

var noValue = noValueType{}

// resource is one entry of the template's Resources.
type resource struct {
	id, typ string
	line    int
	node    *yaml.Node // the resource's mapping
	props   *yaml.Node // its Properties, or nil
	// fixed is the name of a resource the reader names itself (a
	// Serverless Framework function's <Name>LambdaFunction).
	fixed string
	busy  bool
}

// evaluator evaluates the nodes of one template: intrinsic functions,
// parameters, conditions, pseudo parameters and the names and ARNs of the
// template's resources. Values are string, int64, float64, bool, nil, []any
// and *object.
type evaluator struct {
	file      string
	o         *Options
	params    map[string]*yaml.Node
	conds     map[string]*yaml.Node
	condVal   map[string]bool
	condBusy  map[string]bool
	mappings  *yaml.Node
	resources map[string]*resource
	// str, when set, rewrites every plain string before use (the
	// Serverless Framework's ${...} variables).
	str   func(s string, n *yaml.Node) (any, error)
	steps int
	depth int
	// where an error is: the resource (or function) and the property.
	res, prop string
}

func (e *evaluator) at(res, prop string) (restore func()) {
	r, p := e.res, e.prop
	e.res, e.prop = res, prop
	return func() { e.res, e.prop = r, p }
}

// errf returns an *Error at node n, unless err-like args already carry one.
func (e *evaluator) errf(n *yaml.Node, format string, args ...any) error {
	line := 0
	if n != nil {
		line = n.Line
	}
	return &Error{File: e.file, Line: line, Resource: e.res, Property: e.prop, Err: fmt.Errorf(format, args...)}
}

// wrap gives err the position of n unless it already has one.
func (e *evaluator) wrap(n *yaml.Node, err error) error {
	if err == nil {
		return nil
	}
	var te *Error
	if errors.As(err, &te) {
		return err
	}
	return e.errf(n, "%w", err)
}

// deref follows aliases and documents to the node they stand for.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && i < maxDepth; i++ {
		switch n.Kind {
		case yaml.AliasNode:
			n = n.Alias
		case yaml.DocumentNode:
			if len(n.Content) == 0 {
				return nil
			}
			n = n.Content[0]
		default:
			return n
		}
	}
	return n
}

// pairs returns the key and value nodes of a mapping, merge keys (<<)
// expanded, in order.
func pairs(m *yaml.Node) [][2]*yaml.Node {
	m = deref(m)
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	var out [][2]*yaml.Node
	var merged [][2]*yaml.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if k.Tag == "!!merge" || (k.Value == "<<" && k.Style == 0 && k.ShortTag() == "!!merge") {
			v = deref(v)
			srcs := []*yaml.Node{v}
			if v != nil && v.Kind == yaml.SequenceNode {
				srcs = v.Content
			}
			for _, s := range srcs {
				s = deref(s)
				if s != nil && s.Kind == yaml.MappingNode && s != m {
					for j := 0; j+1 < len(s.Content); j += 2 {
						merged = append(merged, [2]*yaml.Node{s.Content[j], s.Content[j+1]})
					}
				}
			}
			continue
		}
		out = append(out, [2]*yaml.Node{k, v})
	}
	// Keys of the mapping itself win over merged ones.
	for _, p := range merged {
		if field(m, p[0].Value) == nil && !hasPair(out, p[0].Value) {
			out = append(out, p)
		}
	}
	return out
}

func hasPair(ps [][2]*yaml.Node, k string) bool {
	for _, p := range ps {
		if p[0].Value == k {
			return true
		}
	}
	return false
}

// field returns the value node of key in mapping m, or nil.
func field(m *yaml.Node, key string) *yaml.Node {
	m = deref(m)
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// intrinsic reports whether n is an intrinsic function, in the short form
// (!Ref X, !Sub ...) or the long form ({"Ref": X}, {"Fn::Sub": ...}), and
// returns its full name and argument.
func intrinsic(n *yaml.Node) (string, *yaml.Node, bool) {
	if n == nil {
		return "", nil, false
	}
	if strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") {
		name := n.Tag[1:]
		arg := *n
		arg.Tag = ""
		if n.Kind == yaml.ScalarNode {
			arg.Tag = "!!str"
		}
		switch name {
		case "Ref", "Condition":
			return name, &arg, true
		}
		return "Fn::" + name, &arg, true
	}
	if n.Kind == yaml.MappingNode && len(n.Content) == 2 {
		k := n.Content[0].Value
		if k == "Ref" || strings.HasPrefix(k, "Fn::") {
			return k, n.Content[1], true
		}
	}
	return "", nil, false
}

// eval evaluates a node to a value.
func (e *evaluator) eval(n *yaml.Node) (any, error) {
	n = deref(n)
	if n == nil {
		return nil, nil
	}
	e.steps++
	if e.steps > maxSteps {
		return nil, e.errf(n, "the template is too large to evaluate (more than %d values, counting aliases and references)", maxSteps)
	}
	e.depth++
	defer func() { e.depth-- }()
	if e.depth > maxDepth {
		return nil, e.errf(n, "values are nested more than %d deep", maxDepth)
	}
	if fn, arg, ok := intrinsic(n); ok {
		return e.call(fn, arg, n)
	}
	switch n.Kind {
	case yaml.ScalarNode:
		return e.scalar(n)
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := e.eval(c)
			if err != nil {
				return nil, err
			}
			if v != noValue {
				out = append(out, v)
			}
		}
		return out, nil
	case yaml.MappingNode:
		out := newObject()
		for _, p := range pairs(n) {
			v, err := e.eval(p[1])
			if err != nil {
				return nil, err
			}
			if v != noValue {
				out.set(p[0].Value, v)
			}
		}
		return out, nil
	}
	return nil, e.errf(n, "unexpected YAML node")
}

func (e *evaluator) scalar(n *yaml.Node) (any, error) {
	switch n.ShortTag() {
	case "!!int":
		if i, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64); err == nil {
			return i, nil
		}
	case "!!float":
		if f, err := strconv.ParseFloat(n.Value, 64); err == nil {
			return f, nil
		}
	case "!!bool":
		if b, err := strconv.ParseBool(strings.ToLower(n.Value)); err == nil {
			return b, nil
		}
	case "!!null":
		return nil, nil
	}
	if e.str != nil && strings.Contains(n.Value, "${") {
		return e.str(n.Value, n)
	}
	return n.Value, nil
}

// str evaluates n and requires a string (a number or boolean is taken as
// its text, as CloudFormation does).
func (e *evaluator) evalString(n *yaml.Node, what string) (string, error) {
	v, err := e.eval(n)
	if err != nil {
		return "", err
	}
	s, ok := text(v)
	if !ok {
		return "", e.errf(deref(n), "%s must be a string, not %s", what, describe(v))
	}
	return s, nil
}

func args(n *yaml.Node, fn string, min, max int) ([]*yaml.Node, error) {
	n = deref(n)
	if n == nil || n.Kind != yaml.SequenceNode || len(n.Content) < min || len(n.Content) > max {
		if min == max {
			return nil, fmt.Errorf("%s takes a list of %d values", fn, min)
		}
		return nil, fmt.Errorf("%s takes a list of %d to %d values", fn, min, max)
	}
	return n.Content, nil
}

// call evaluates the intrinsic function fn with its argument node arg; at
// is the node that holds the call.
func (e *evaluator) call(fn string, arg, at *yaml.Node) (any, error) {
	short := "!" + strings.TrimPrefix(fn, "Fn::")
	switch fn {
	case "Ref":
		name, err := e.evalString(arg, "the name given to !Ref")
		if err != nil {
			return nil, err
		}
		return e.ref(name, at)
	case "Fn::GetAtt":
		a := deref(arg)
		var id, attr string
		if a != nil && a.Kind == yaml.ScalarNode {
			var ok bool
			id, attr, ok = strings.Cut(a.Value, ".")
			if !ok {
				return nil, e.errf(at, "!GetAtt %s: give it as LogicalId.Attribute", a.Value)
			}
		} else {
			as, err := args(a, short, 2, 2)
			if err != nil {
				return nil, e.wrap(at, err)
			}
			if id, err = e.evalString(as[0], "the resource of !GetAtt"); err != nil {
				return nil, err
			}
			if attr, err = e.evalString(as[1], "the attribute of !GetAtt"); err != nil {
				return nil, err
			}
		}
		return e.getAtt(id, attr, at)
	case "Fn::Sub":
		return e.sub(arg, at)
	case "Fn::Join":
		sep, rest, err := e.stringAnd(arg, at, short, "the delimiter")
		if err != nil {
			return nil, err
		}
		list, err := e.list(rest, "the values of !Join")
		if err != nil {
			return nil, err
		}
		parts := make([]string, 0, len(list))
		size := 0
		for _, v := range list {
			s, ok := text(v)
			if !ok {
				return nil, e.errf(at, "!Join: every value must be a string, not %s", describe(v))
			}
			size += len(s) + len(sep)
			if size > maxValue {
				return nil, e.errf(at, "!Join makes a string longer than %d bytes", maxValue)
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, sep), nil
	case "Fn::Select":
		is, rest, err := e.stringAnd(arg, at, short, "the index")
		if err != nil {
			return nil, err
		}
		i, err := strconv.Atoi(is)
		if err != nil {
			return nil, e.errf(at, "!Select: index %q is not a number", is)
		}
		list, err := e.list(rest, "the values of !Select")
		if err != nil {
			return nil, err
		}
		if i < 0 || i >= len(list) {
			return nil, e.errf(at, "!Select: index %d is out of range for a list of %d", i, len(list))
		}
		return list[i], nil
	case "Fn::Split":
		sep, rest, err := e.stringAnd(arg, at, short, "the delimiter")
		if err != nil {
			return nil, err
		}
		s, err := e.evalString(rest, "the string of !Split")
		if err != nil {
			return nil, err
		}
		if sep == "" {
			return nil, e.errf(at, "!Split: the delimiter is empty")
		}
		var out []any
		for _, p := range strings.Split(s, sep) {
			out = append(out, p)
		}
		return out, nil
	case "Fn::If":
		as, err := args(arg, short, 3, 3)
		if err != nil {
			return nil, e.wrap(at, err)
		}
		name, err := e.evalString(as[0], "the condition of !If")
		if err != nil {
			return nil, err
		}
		ok, err := e.condition(name, as[0])
		if err != nil {
			return nil, err
		}
		if ok {
			return e.eval(as[1])
		}
		return e.eval(as[2])
	case "Fn::ImportValue":
		name, err := e.evalString(arg, "the name given to !ImportValue")
		if err != nil {
			return nil, err
		}
		v, ok := e.o.Imports[name]
		if !ok {
			return nil, e.errf(at, "!ImportValue %s: no value given; pass --import-value %s=VALUE", name, name)
		}
		return v, nil
	case "Fn::FindInMap":
		as, err := args(arg, short, 3, 4)
		if err != nil {
			return nil, e.wrap(at, err)
		}
		var keys [3]string
		for i := range keys {
			if keys[i], err = e.evalString(as[i], "a key of !FindInMap"); err != nil {
				return nil, err
			}
		}
		m := field(field(field(e.mappings, keys[0]), keys[1]), keys[2])
		if m == nil {
			if len(as) == 4 { // {DefaultValue: ...} (AWS::LanguageExtensions)
				if d := field(as[3], "DefaultValue"); d != nil {
					return e.eval(d)
				}
			}
			return nil, e.errf(at, "!FindInMap: Mappings has no %s.%s.%s", keys[0], keys[1], keys[2])
		}
		return e.eval(m)
	case "Fn::Base64":
		s, err := e.evalString(arg, "the value of !Base64")
		if err != nil {
			return nil, err
		}
		return base64.StdEncoding.EncodeToString([]byte(s)), nil
	case "Fn::Equals", "Fn::And", "Fn::Or", "Fn::Not", "Condition":
		return e.condExpr(at)
	}
	return nil, e.errf(at, "%s is not supported by esmd's template reader", short)
}

// stringAnd reads the [string, value] argument of Join, Select and Split:
// it evaluates the first and returns the node of the second.
func (e *evaluator) stringAnd(arg, at *yaml.Node, fn, what string) (string, *yaml.Node, error) {
	as, err := args(arg, fn, 2, 2)
	if err != nil {
		return "", nil, e.wrap(at, err)
	}
	s, err := e.evalString(as[0], what+" of "+fn)
	return s, as[1], err
}

// list evaluates n and requires a list.
func (e *evaluator) list(n *yaml.Node, what string) ([]any, error) {
	v, err := e.eval(n)
	if err != nil {
		return nil, err
	}
	l, ok := v.([]any)
	if !ok {
		return nil, e.errf(deref(n), "%s must be a list, not %s", what, describe(v))
	}
	return l, nil
}

// sub evaluates Fn::Sub: "text ${Name} ${Res.Attr} ${!Literal}" or
// [text, {Name: value}].
func (e *evaluator) sub(arg, at *yaml.Node) (any, error) {
	a := deref(arg)
	var tmpl *yaml.Node
	vars := map[string]*yaml.Node{}
	if a != nil && a.Kind == yaml.SequenceNode {
		as, err := args(a, "!Sub", 2, 2)
		if err != nil {
			return nil, e.wrap(at, err)
		}
		tmpl = deref(as[0])
		for _, p := range pairs(as[1]) {
			vars[p[0].Value] = p[1]
		}
	} else {
		tmpl = a
	}
	if tmpl == nil || tmpl.Kind != yaml.ScalarNode {
		return nil, e.errf(at, "!Sub takes a string, or a list of a string and a map of variables")
	}
	s := tmpl.Value
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:i])
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return nil, e.errf(at, "!Sub %q: ${ is not closed", tmpl.Value)
		}
		name := strings.TrimSpace(s[i+2 : i+j])
		s = s[i+j+1:]
		if strings.HasPrefix(name, "!") {
			b.WriteString("${" + name[1:] + "}")
			continue
		}
		var v any
		var err error
		if n, ok := vars[name]; ok {
			v, err = e.eval(n)
		} else if id, attr, ok := strings.Cut(name, "."); ok {
			v, err = e.getAtt(id, attr, at)
		} else {
			v, err = e.ref(name, at)
		}
		if err != nil {
			return nil, err
		}
		t, ok := text(v)
		if !ok {
			return nil, e.errf(at, "!Sub: ${%s} is %s, not a string", name, describe(v))
		}
		b.WriteString(t)
		if b.Len() > maxValue {
			return nil, e.errf(at, "!Sub makes a string longer than %d bytes", maxValue)
		}
	}
	return b.String(), nil
}

// partition is AWS::Partition for the region.
func partition(region string) string {
	switch {
	case strings.HasPrefix(region, "cn-"):
		return "aws-cn"
	case strings.HasPrefix(region, "us-gov-"):
		return "aws-us-gov"
	}
	return "aws"
}

func (e *evaluator) pseudo(name string) (any, bool) {
	if v, ok := e.o.Parameters[name]; ok && strings.HasPrefix(name, "AWS::") {
		return v, true
	}
	r, a := e.o.Region, e.o.Account
	p := partition(r)
	switch name {
	case "AWS::NoValue":
		return noValue, true
	case "AWS::Region":
		return r, true
	case "AWS::AccountId":
		return a, true
	case "AWS::Partition":
		return p, true
	case "AWS::StackName":
		return e.o.stackName(), true
	case "AWS::StackId":
		return fmt.Sprintf("arn:%s:cloudformation:%s:%s:stack/%s/00000000-0000-0000-0000-000000000000", p, r, a, e.o.stackName()), true
	case "AWS::URLSuffix":
		if p == "aws-cn" {
			return "amazonaws.com.cn", true
		}
		return "amazonaws.com", true
	case "AWS::NotificationARNs":
		return []any{}, true
	}
	return nil, false
}

// ref evaluates Ref name.
func (e *evaluator) ref(name string, at *yaml.Node) (any, error) {
	if v, ok := e.pseudo(name); ok {
		return v, nil
	}
	if p, ok := e.params[name]; ok {
		return e.param(name, p, at)
	}
	if v, ok := e.o.Resources[name]; ok {
		return v, nil
	}
	if r, ok := e.resources[name]; ok {
		return e.resourceValue(r, "", at)
	}
	return nil, e.errf(at, "!Ref %s: the template has no parameter or resource %s", name, name)
}

// getAtt evaluates GetAtt id.attr.
func (e *evaluator) getAtt(id, attr string, at *yaml.Node) (any, error) {
	if v, ok := e.o.Resources[id+"."+attr]; ok {
		return v, nil
	}
	r, ok := e.resources[id]
	if !ok {
		return nil, e.errf(at, "!GetAtt %s.%s: the template has no resource %s", id, attr, id)
	}
	return e.resourceValue(r, attr, at)
}

// param is the value of a parameter: its --parameter-overrides value, else
// its Default; list types are split at commas.
func (e *evaluator) param(name string, def, at *yaml.Node) (any, error) {
	typ := ""
	if t := deref(field(def, "Type")); t != nil {
		typ = t.Value
	}
	s, ok := e.o.Parameters[name]
	if !ok && strings.HasPrefix(typ, "AWS::SSM::Parameter::") {
		return nil, e.errf(at, "!Ref %s: parameter %s is read from SSM Parameter Store, which esmd does not read; give its value with --parameter-overrides %s=VALUE", name, name, name)
	}
	if !ok {
		d := field(def, "Default")
		if d == nil {
			return nil, e.errf(at, "!Ref %s: parameter %s has no Default; give it with --parameter-overrides %s=VALUE", name, name, name)
		}
		restore := e.at("Parameters", name+".Default")
		v, err := e.eval(d)
		restore()
		if err != nil {
			return nil, err
		}
		if l, isList := v.([]any); isList {
			return l, nil
		}
		if s, ok = text(v); !ok {
			return nil, e.errf(d, "the Default of parameter %s must be a string, not %s", name, describe(v))
		}
	}
	if typ == "CommaDelimitedList" || strings.HasPrefix(typ, "List<") {
		var out []any
		for _, p := range strings.Split(s, ",") {
			out = append(out, strings.TrimSpace(p))
		}
		return out, nil
	}
	return s, nil
}

// condition evaluates the named condition of the template's Conditions.
func (e *evaluator) condition(name string, at *yaml.Node) (bool, error) {
	if v, ok := e.condVal[name]; ok {
		return v, nil
	}
	n, ok := e.conds[name]
	if !ok {
		return false, e.errf(at, "the template has no condition %s", name)
	}
	if e.condBusy[name] {
		return false, e.errf(at, "condition %s refers to itself", name)
	}
	e.condBusy[name] = true
	restore := e.at("Conditions", name)
	v, err := e.condExpr(n)
	restore()
	e.condBusy[name] = false
	if err != nil {
		return false, err
	}
	e.condVal[name] = v
	return v, nil
}

// condExpr evaluates a condition function: Fn::Equals, Fn::And, Fn::Or,
// Fn::Not, or {Condition: Name}.
func (e *evaluator) condExpr(n *yaml.Node) (bool, error) {
	n = deref(n)
	e.depth++
	defer func() { e.depth-- }()
	if e.depth > maxDepth {
		return false, e.errf(n, "conditions are nested more than %d deep", maxDepth)
	}
	fn, arg, ok := intrinsic(n)
	if !ok && n != nil && n.Kind == yaml.MappingNode && len(n.Content) == 2 && n.Content[0].Value == "Condition" {
		fn, arg, ok = "Condition", n.Content[1], true
	}
	if !ok {
		v, err := e.eval(n)
		if err != nil {
			return false, err
		}
		if b, isBool := v.(bool); isBool {
			return b, nil
		}
		if s, isStr := v.(string); isStr && (s == "true" || s == "false") {
			return s == "true", nil
		}
		return false, e.errf(n, "a condition must be Fn::Equals, Fn::And, Fn::Or, Fn::Not or Condition, not %s", describe(v))
	}
	switch fn {
	case "Condition":
		name, err := e.evalString(arg, "the name given to Condition")
		if err != nil {
			return false, err
		}
		return e.condition(name, n)
	case "Fn::Equals":
		as, err := args(arg, "!Equals", 2, 2)
		if err != nil {
			return false, e.wrap(n, err)
		}
		a, err := e.eval(as[0])
		if err != nil {
			return false, err
		}
		b, err := e.eval(as[1])
		if err != nil {
			return false, err
		}
		ta, okA := text(a)
		tb, okB := text(b)
		if !okA || !okB {
			return false, e.errf(n, "!Equals compares strings, not %s and %s", describe(a), describe(b))
		}
		return ta == tb, nil
	case "Fn::And", "Fn::Or":
		as, err := args(arg, "!"+strings.TrimPrefix(fn, "Fn::"), 2, 10)
		if err != nil {
			return false, e.wrap(n, err)
		}
		and := fn == "Fn::And"
		for _, c := range as {
			v, err := e.condExpr(c)
			if err != nil {
				return false, err
			}
			if v != and {
				return v, nil
			}
		}
		return and, nil
	case "Fn::Not":
		as, err := args(arg, "!Not", 1, 1)
		if err != nil {
			return false, e.wrap(n, err)
		}
		v, err := e.condExpr(as[0])
		return !v, err
	}
	v, err := e.call(fn, arg, n)
	if err != nil {
		return false, err
	}
	if b, isBool := v.(bool); isBool {
		return b, nil
	}
	return false, e.errf(n, "%s is not a condition", fn)
}

// created reports whether a resource is created: it has no Condition, or
// its Condition is true.
func (e *evaluator) created(r *resource) (bool, error) {
	c := deref(field(r.node, "Condition"))
	if c == nil {
		return true, nil
	}
	restore := e.at(r.id, "Condition")
	defer restore()
	return e.condition(c.Value, c)
}
