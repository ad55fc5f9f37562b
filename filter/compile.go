package filter

import (
	"sort"
	"strconv"
	"strings"
)

// This file turns one pattern's text into sub-rules: each sub-rule is a
// conjunction of clauses, one per flattened field path, and a pattern is
// the disjunction of its sub-rules ("$or" branches are expanded). The walk
// follows the reference engine's streaming compiler token by token so that
// the first error found, and its wording, are the same.

type vkind uint8

const (
	vExact      vkind = iota // string equality
	vNumText                 // number literal, by its text
	vNumEq                   // number, numerically
	vTrue                    // literal true
	vFalse                   // literal false
	vNull                    // literal null
	vPrefix                  // string prefix
	vSuffix                  // string suffix
	vEIC                     // equals-ignore-case (operand folded)
	vPrefixEIC               // prefix + equals-ignore-case (folded)
	vSuffixEIC               // suffix + equals-ignore-case (folded)
	vWildcard                // wildcard
	vIP                      // cidr, or a plain value that is an IP literal
	vRange                   // numeric comparison
	vExists                  // exists: true (any leaf)
	vABStr                   // anything-but string(s)
	vABNum                   // anything-but number(s)
	vABPrefix                // anything-but prefix(es)
	vABSuffix                // anything-but suffix(es)
	vABEIC                   // anything-but equals-ignore-case (folded)
	vABWildcard              // anything-but wildcard(s)
)

// valueSpec is one alternative inside a clause's value array.
type valueSpec struct {
	kind   vkind
	s      string
	n      int64
	lo, hi int64
	hasLo  bool
	hasHi  bool
	openLo bool
	openHi bool
	ip     ipRange
	wc     *wildcard
	set    []string
	nums   []int64
	wcs    []*wildcard
}

// key identifies equal alternatives so a field evaluates each only once.
func (v *valueSpec) key() string {
	var b strings.Builder
	b.WriteByte(byte('A' + v.kind))
	switch v.kind {
	case vNumEq:
		b.WriteString(strconv.FormatInt(v.n, 10))
	case vRange:
		b.WriteString(strconv.FormatInt(v.lo, 10) + "," + strconv.FormatInt(v.hi, 10) + "," +
			strconv.FormatBool(v.hasLo) + strconv.FormatBool(v.hasHi) + strconv.FormatBool(v.openLo) + strconv.FormatBool(v.openHi))
	case vIP:
		b.Write(v.ip.lo.b[:v.ip.lo.n])
		b.Write(v.ip.hi.b[:v.ip.hi.n])
	case vABStr, vABPrefix, vABSuffix, vABEIC, vABWildcard:
		for _, s := range v.set {
			b.WriteString(strconv.Quote(s))
		}
	case vABNum:
		for _, n := range v.nums {
			b.WriteString(strconv.FormatInt(n, 10) + ",")
		}
	default:
		b.WriteString(v.s)
	}
	return b.String()
}

// clauseSpec is what one sub-rule requires of one field path: a leaf value
// matching one of values, or (absent) no leaf at all.
type clauseSpec struct {
	values []valueSpec
	absent bool
}

type ruleSpec map[string]*clauseSpec

// Dialect selects which operators are accepted.
type Dialect uint8

const (
	// Lambda accepts what Lambda event filtering accepts: the EventBridge
	// grammar without "wildcard" and the anything-but object forms
	// (prefix, suffix, equals-ignore-case, wildcard), which EventBridge's
	// operator table marks "Pipe support: No"; Pipes and Lambda share one
	// filtering model.
	Lambda Dialect = iota
	// EventBridge accepts the full EventBridge event-pattern grammar.
	EventBridge
)

// maxSubRules bounds the expansion of nested "$or" so that a 4 KB pattern
// cannot compile into an exponential number of alternatives.
const maxSubRules = 1024

var reservedInOr = map[string]bool{
	"exactly": true, "equals-ignore-case": true, "prefix": true, "suffix": true,
	"anything-but": true, "exists": true, "wildcard": true, "numeric": true,
	"cidr": true, "html": true, "=": true, "<": true, "<=": true, ">": true,
	">=": true, "regex": true, "not-wildcard": true, "not-equals-ignore-case": true,
	"date-after": true, "date-on-or-after": true, "date-before": true,
	"date-on-or-before": true, "in-date-range": true, "ip-address-in-range": true,
	"ip-address-not-in-range": true,
}

type compiler struct {
	lx        *lexer
	dialect   Dialect
	orAsField bool // legacy mode: "$or" is an ordinary field name
	rules     []ruleSpec
	err       *PatternError
	// semantic marks errors the reference engine raises as plain argument
	// errors, for which it does not retry in legacy mode.
	semantic bool
}

// parsePattern compiles one pattern into its sub-rules.
func parsePattern(src string, d Dialect) ([]ruleSpec, *PatternError) {
	rules, err, semantic := parseWith(src, d, false)
	if err != nil && !semantic && strings.Contains(src, "$or") {
		// The reference engine retries a rule its "$or"-aware compiler
		// rejects with its older compiler, which treats "$or" as a field
		// name; if that also fails, its error is the one reported.
		rules2, err2, _ := parseWith(src, d, true)
		return rules2, err2
	}
	return rules, err
}

func parseWith(src string, d Dialect, orAsField bool) ([]ruleSpec, *PatternError, bool) {
	c := &compiler{lx: newLexer(src), dialect: d, orAsField: orAsField}
	c.run()
	if c.lx.err != nil {
		return nil, c.lx.err, false
	}
	if c.err != nil {
		return nil, c.err, c.semantic
	}
	return c.rules, nil, false
}

func (c *compiler) failed() bool { return c.err != nil || c.lx.err != nil }

// barf records a grammar error at the parser's current location.
func (c *compiler) barf(reason string) {
	if c.failed() {
		return
	}
	line, col := c.lx.location(c.lx.end)
	c.err = &PatternError{Reason: reason, Line: line, Column: col, Pattern: c.lx.src}
}

// barfArg records an error the reference engine raises outside its JSON
// parser (no location, no legacy retry).
func (c *compiler) barfArg(reason string) {
	if c.failed() {
		return
	}
	c.err = &PatternError{Reason: reason, Pattern: c.lx.src}
	c.semantic = true
}

func (c *compiler) run() {
	if c.lx.next() != tBeginObj {
		c.barf("Filter is not an object")
		return
	}
	c.object(nil, false)
	if c.failed() {
		return
	}
	c.lx.next() // reports trailing content, if any
}

func joinPath(path []string, name string) string {
	if len(path) == 0 {
		return name
	}
	return strings.Join(path, ".") + "." + name
}

func (c *compiler) object(path []string, inOr bool) {
	fields := false
	for {
		t := c.lx.next()
		if c.failed() {
			return
		}
		if t == tEndObj {
			break
		}
		fields = true
		name := c.lx.text
		if name == "$or" && !c.orAsField {
			c.or(path)
			if c.failed() {
				return
			}
			continue
		}
		if inOr && reservedInOr[name] {
			c.barf(name + " is Ruler reserved fieldName which cannot be used inside $or.")
			return
		}
		switch c.lx.next() {
		case tBeginObj:
			c.object(append(path[:len(path):len(path)], name), inOr)
		case tBeginArr:
			c.writeRules(joinPath(path, name))
		default:
			c.barf(strconv.Quote(name) + " must be an object or an array")
		}
		if c.failed() {
			return
		}
	}
	if !fields {
		c.barf("Empty objects are not allowed")
	}
}

func copyRules(rules []ruleSpec) []ruleSpec {
	out := make([]ruleSpec, len(rules))
	for i, r := range rules {
		m := make(ruleSpec, len(r))
		for k, v := range r {
			m[k] = v
		}
		out[i] = m
	}
	return out
}

func (c *compiler) or(path []string) {
	current := copyRules(c.rules)
	c.rules = nil
	if c.lx.next() != tBeginArr {
		c.barf("It must be an Array followed with $or.")
		return
	}
	var all []ruleSpec
	n := 0
	for {
		t := c.lx.next()
		if c.failed() {
			return
		}
		if t == tEndArr {
			break
		}
		n++
		if t != tBeginObj {
			c.barf("Only JSON object is allowed in array of $or relationship.")
			return
		}
		branch := copyRules(current)
		if len(branch) == 0 {
			branch = []ruleSpec{{}}
		}
		c.rules = branch
		c.object(path, true)
		if c.failed() {
			return
		}
		all = append(all, c.rules...)
		if len(all) > maxSubRules {
			c.barf("Too many combinations of $or alternatives (more than " + strconv.Itoa(maxSubRules) + ")")
			return
		}
	}
	if n < 2 {
		c.barf("There must have at least 2 Objects in $or relationship.")
		return
	}
	c.rules = all
}

func (c *compiler) writeRules(name string) {
	cl := &clauseSpec{}
	count := 0
	for {
		t := c.lx.next()
		if c.failed() {
			return
		}
		if t == tEndArr {
			break
		}
		count++
		switch t {
		case tBeginObj:
			c.matchExpression(cl)
		case tString:
			s := c.lx.text
			if a, st := parseIP([]byte(s)); st == ipOK {
				cl.values = append(cl.values, valueSpec{kind: vIP, ip: ipRange{lo: a, hi: a}})
			} else {
				cl.values = append(cl.values, valueSpec{kind: vExact, s: s})
			}
		case tNumber:
			// Like the reference engine: match numerically when the number
			// is comparable, and always by its literal text.
			if n, st := parseFixed([]byte(c.lx.text)); st == numOK {
				cl.values = append(cl.values, valueSpec{kind: vNumEq, n: n})
			}
			cl.values = append(cl.values, valueSpec{kind: vNumText, s: c.lx.text})
		case tTrue:
			cl.values = append(cl.values, valueSpec{kind: vTrue})
		case tFalse:
			cl.values = append(cl.values, valueSpec{kind: vFalse})
		case tNull:
			cl.values = append(cl.values, valueSpec{kind: vNull})
		default:
			c.barf("Match value must be String, number, true, false, or null")
		}
		if c.failed() {
			return
		}
	}
	if count == 0 {
		c.barf("Empty arrays are not allowed")
		return
	}
	if len(c.rules) == 0 {
		c.rules = []ruleSpec{{}}
	}
	for _, r := range c.rules {
		r[name] = cl // the last occurrence of a path wins
	}
}

// endObj expects the '}' closing a one-key match expression.
func (c *compiler) endObj(reason string) {
	if c.lx.next() != tEndObj {
		c.barf(reason)
	}
}

const onlyOneKey = "Only one key allowed in match expression"

func (c *compiler) matchExpression(cl *clauseSpec) {
	if c.lx.next() != tName {
		c.barf("Match expression name not found")
		return
	}
	op := c.lx.text
	switch op {
	case "exactly":
		if c.lx.next() != tString {
			c.barf("exact match pattern must be a string")
			return
		}
		cl.values = append(cl.values, valueSpec{kind: vExact, s: c.lx.text})
		c.endObj(onlyOneKey)
	case "prefix", "suffix":
		t := c.lx.next()
		if t == tBeginObj {
			c.affixIgnoreCase(cl, op)
			return
		}
		if t != tString {
			c.barf(op + " match pattern must be a string")
			return
		}
		k := vPrefix
		if op == "suffix" {
			k = vSuffix
		}
		cl.values = append(cl.values, valueSpec{kind: k, s: c.lx.text})
		c.endObj(onlyOneKey)
	case "numeric":
		if c.lx.next() != tBeginArr {
			c.barf("Value of numeric must be an array.")
			return
		}
		v, ok := c.numeric()
		if !ok {
			return
		}
		cl.values = append(cl.values, v)
		c.endObj("Too many elements in numeric expression")
	case "anything-but":
		c.anythingBut(cl)
	case "exists":
		switch c.lx.next() {
		case tTrue:
			cl.values = append(cl.values, valueSpec{kind: vExists})
		case tFalse:
			cl.absent = true
		default:
			c.barf("exists match pattern must be either true or false.")
			return
		}
		c.endObj(onlyOneKey)
	case "cidr":
		if c.lx.next() != tString {
			c.barf("prefix match pattern must be a string") // sic: the reference engine's wording
			return
		}
		r, reason := parseCIDR(c.lx.text)
		if reason != "" {
			c.barfArg(reason)
			return
		}
		cl.values = append(cl.values, valueSpec{kind: vIP, ip: r})
		c.endObj(onlyOneKey)
	case "equals-ignore-case":
		if c.lx.next() != tString {
			c.barf("equals-ignore-case match pattern must be a string")
			return
		}
		cl.values = append(cl.values, valueSpec{kind: vEIC, s: foldString(c.lx.text)})
		c.endObj(onlyOneKey)
	case "wildcard":
		if c.dialect == Lambda {
			c.barf("wildcard is not supported by Lambda event filtering")
			return
		}
		if c.lx.next() != tString {
			c.barf("wildcard match pattern must be a string")
			return
		}
		w, reason := compileWildcard(c.lx.text)
		if reason != "" {
			c.barf(reason)
			return
		}
		cl.values = append(cl.values, valueSpec{kind: vWildcard, s: c.lx.text, wc: w})
		c.endObj(onlyOneKey)
	default:
		c.barf("Unrecognized match type " + op)
	}
}

// affixIgnoreCase handles {"prefix": {"equals-ignore-case": "..."}} and the
// suffix form; the opening brace of the inner object has been read.
func (c *compiler) affixIgnoreCase(cl *clauseSpec, op string) {
	title := "Prefix"
	k := vPrefixEIC
	if op == "suffix" {
		title, k = "Suffix", vSuffixEIC
	}
	if c.lx.next() != tName {
		c.barf(title + " expression name not found")
		return
	}
	if c.lx.text != "equals-ignore-case" {
		c.barf("Unsupported " + op + " pattern: " + c.lx.text)
		return
	}
	if c.lx.next() != tString {
		c.barf("equals-ignore-case match pattern must be a string")
		return
	}
	cl.values = append(cl.values, valueSpec{kind: k, s: foldString(c.lx.text)})
	c.endObj(onlyOneKey)
	if !c.failed() {
		c.endObj(onlyOneKey)
	}
}

// comparable parses a numeric operand, reporting the reference engine's
// messages for numbers it cannot compare.
func (c *compiler) comparable(text string) (int64, bool) {
	n, st := parseFixed([]byte(text))
	if st != numOK {
		c.barf(st.reason())
		return 0, false
	}
	return n, true
}

func (c *compiler) numeric() (valueSpec, bool) {
	var v valueSpec
	if c.lx.next() != tString {
		c.barf("Invalid member in numeric match: " + c.tokenText())
		return v, false
	}
	op := c.lx.text
	switch op {
	case "=", ">=", ">", "<=", "<":
	default:
		c.barf("Unrecognized numeric range operator: " + op)
		return v, false
	}
	if c.lx.next() != tNumber {
		name := op
		if op == "=" {
			name = "equals"
		}
		c.barf("Value of " + name + " must be numeric")
		return v, false
	}
	n, ok := c.comparable(c.lx.text)
	if !ok {
		return v, false
	}
	switch op {
	case "=":
		v = valueSpec{kind: vNumEq, n: n}
		if c.lx.next() != tEndArr {
			c.barf("Too many elements in numeric expression")
			return v, false
		}
		return v, true
	case "<=", "<":
		v = valueSpec{kind: vRange, hi: n, hasHi: true, openHi: op == "<"}
		if c.lx.next() != tEndArr {
			c.barf("Too many elements in numeric expression")
			return v, false
		}
		return v, true
	}
	v = valueSpec{kind: vRange, lo: n, hasLo: true, openLo: op == ">"}
	t := c.lx.next()
	if t == tEndArr {
		return v, true
	}
	if t != tString {
		c.barf("Bad value in numeric range: " + c.tokenText())
		return v, false
	}
	op2 := c.lx.text
	if op2 != "<" && op2 != "<=" {
		c.barf("Bad numeric range operator: " + op2)
		return v, false
	}
	if c.lx.next() != tNumber {
		c.barf("Value of " + op2 + " must be numeric")
		return v, false
	}
	hi, ok := c.comparable(c.lx.text)
	if !ok {
		return v, false
	}
	v.hi, v.hasHi, v.openHi = hi, true, op2 == "<"
	if c.lx.next() != tEndArr {
		c.barf("Too many terms in numeric range expression")
		return v, false
	}
	return v, true
}

// tokenText is the text of the current token as the reference engine's
// parser would print it.
func (c *compiler) tokenText() string {
	switch c.lx.kind {
	case tString, tNumber, tName:
		return c.lx.text
	case tBeginObj:
		return "{"
	case tEndObj:
		return "}"
	case tBeginArr:
		return "["
	case tEndArr:
		return "]"
	case tTrue:
		return "true"
	case tFalse:
		return "false"
	case tNull:
		return "null"
	}
	return ""
}

func (c *compiler) anythingBut(cl *clauseSpec) {
	kind := vABStr // plain anything-but; decided by value type below
	set := false
	t := c.lx.next()
	if t == tBeginObj {
		if c.lx.next() != tName {
			c.barf("Anything-but expression name not found")
			return
		}
		op := c.lx.text
		switch op {
		case "equals-ignore-case":
			kind = vABEIC
		case "prefix":
			kind = vABPrefix
		case "suffix":
			kind = vABSuffix
		case "wildcard":
			kind = vABWildcard
		default:
			c.barf("Unsupported anything-but pattern: " + op)
			return
		}
		if c.dialect == Lambda {
			c.barf("anything-but with " + op + " is not supported by Lambda event filtering")
			return
		}
		set = true
		t = c.lx.next()
	}
	if c.failed() {
		return
	}
	if t != tBeginArr && t != tString && t != tNumber {
		c.barf("Value of anything-but must be an array or single string/number value.")
		return
	}
	var v valueSpec
	if !set {
		v = c.anythingButPlain(t)
	} else {
		v = c.anythingButSet(t, kind)
	}
	if c.failed() {
		return
	}
	cl.values = append(cl.values, v)
	c.endObj("Too many elements in numeric expression")
	if set && !c.failed() {
		c.endObj("Too many elements in numeric expression")
	}
}

func (c *compiler) anythingButPlain(t tokKind) valueSpec {
	v := valueSpec{kind: vABStr}
	if t == tString {
		v.set = []string{c.lx.text}
		return v
	}
	if t == tNumber {
		n, ok := c.comparable(c.lx.text)
		if !ok {
			return v
		}
		return valueSpec{kind: vABNum, nums: []int64{n}}
	}
	hasNum, hasStr := false, false
	for {
		t := c.lx.next()
		if c.failed() {
			return v
		}
		if t == tEndArr {
			break
		}
		switch t {
		case tString:
			hasStr = true
			v.set = append(v.set, c.lx.text)
		case tNumber:
			hasNum = true
			n, ok := c.comparable(c.lx.text)
			if !ok {
				return v
			}
			v.nums = append(v.nums, n)
		default:
			c.barf("Inside anything but list, start|null|boolean is not supported.")
			return v
		}
	}
	if hasNum == hasStr {
		c.barf("Inside anything but list, either all values are number or string, mixed type is not supported")
		return v
	}
	if hasNum {
		v.kind = vABNum
		v.set = nil
	}
	return v
}

func (c *compiler) anythingButSet(t tokKind, kind vkind) valueSpec {
	v := valueSpec{kind: kind}
	add := func() bool {
		s := c.lx.text
		if (kind == vABPrefix || kind == vABSuffix) && s == "" {
			c.barf("Null prefix/suffix not allowed")
			return false
		}
		switch kind {
		case vABEIC:
			s = foldString(s)
		case vABWildcard:
			w, reason := compileWildcard(s)
			if reason != "" {
				c.barf(reason)
				return false
			}
			v.wcs = append(v.wcs, w)
		}
		v.set = append(v.set, s)
		return true
	}
	wrongType := func() {
		switch kind {
		case vABEIC:
			c.barf("Inside anything-but/equals-ignore-case list, number|start|null|boolean is not supported.")
		case vABWildcard:
			c.barf("wildcard match pattern must be a string")
		default:
			c.barf("prefix/suffix match pattern must be a string")
		}
	}
	if t == tString {
		add()
		return v
	}
	if t != tBeginArr {
		wrongType()
		return v
	}
	for {
		t := c.lx.next()
		if c.failed() {
			return v
		}
		if t == tEndArr {
			break
		}
		if t != tString {
			wrongType()
			return v
		}
		if !add() {
			return v
		}
	}
	return v
}

// sortedPaths returns the paths of a sub-rule in a stable order.
func (r ruleSpec) sortedPaths() []string {
	ps := make([]string, 0, len(r))
	for p := range r {
		ps = append(ps, p)
	}
	sort.Strings(ps)
	return ps
}
