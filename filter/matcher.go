package filter

import (
	"fmt"
	"sort"
	"strings"
	"sync"
)

// Limits from the Lambda API (FilterCriteria) and service quotas.
const (
	// MaxPatternLength is the longest Filter.Pattern Lambda accepts.
	MaxPatternLength = 4096
	// DefaultMaxFilters is the default quota of filters per mapping.
	DefaultMaxFilters = 5
	// QuotaMaxFilters is the highest value the quota can be raised to.
	QuotaMaxFilters = 10
)

// Option configures Compile.
type Option func(*config) error

type config struct {
	maxFilters int
	dialect    Dialect
	source     Source
	setMax     bool
	setDialect bool
	setSource  bool
}

// WithMaxFilters sets the per-mapping filter quota (Lambda's default is
// DefaultMaxFilters, raisable to QuotaMaxFilters). Zero or less means no
// limit, for tools that are not bound by a mapping's quota.
func WithMaxFilters(n int) Option {
	return func(c *config) error {
		if c.setMax {
			return fmt.Errorf("filter: WithMaxFilters given twice")
		}
		c.setMax, c.maxFilters = true, n
		return nil
	}
}

// WithDialect selects the accepted grammar; the default is Lambda.
func WithDialect(d Dialect) Option {
	return func(c *config) error {
		if c.setDialect {
			return fmt.Errorf("filter: WithDialect given twice")
		}
		if d != Lambda && d != EventBridge {
			return fmt.Errorf("filter: unknown dialect %d", d)
		}
		c.setDialect, c.dialect = true, d
		return nil
	}
}

// WithSource enables the create-time checks Lambda makes for one source:
// Kinesis and DynamoDB reject a plain (non-JSON) pattern on their data
// field, and DocumentDB rejects filtering altogether.
func WithSource(s Source) Option {
	return func(c *config) error {
		if c.setSource {
			return fmt.Errorf("filter: WithSource given twice")
		}
		c.setSource, c.source = true, s
		return nil
	}
}

// bitRef sets mask m in word w of a clause bitset.
type bitRef struct {
	w int32
	m uint64
}

// ruleWord is one word of a sub-rule's clause masks: all its clauses, and
// those that are also satisfied by absence (exists: false).
type ruleWord struct {
	w       int32
	all, aa uint64
}

type subRule struct {
	filter int
	words  []ruleWord
	// strict: no clause can be satisfied by absence, so once all its
	// clauses hold the answer cannot change and matching can stop early.
	strict bool
}

// scopeRule is a sub-rule's clauses below a scoped node (see node.scoped).
type scopeRule struct {
	words []ruleWord
	allAA bool
}

// valPat is one distinct value alternative at a field, with the clause
// bits it satisfies.
type valPat struct {
	spec valueSpec
	bits []bitRef
	subs []int32
}

type leafMatcher struct {
	pats    []valPat
	exact   map[string]int32 // vExact
	numText map[string]int32 // vNumText
	numEq   map[int64]int32  // vNumEq
	eic     map[string]int32 // vEIC (folded)
	lit     [3]int32         // vTrue, vFalse, vNull; -1 if absent
	others  []int32          // everything evaluated one by one
	fold    bool             // some alternative compares folded text
	numeric bool             // some alternative compares numerically
	ip      bool             // some alternative compares addresses
}

type kid struct {
	name string
	n    *node
}

// node is a position in the trie of flattened field paths the patterns
// mention; the event scanner walks it alongside the JSON and skips any
// subtree whose path no pattern mentions.
type node struct {
	kids    []kid
	kidMap  map[string]*node
	leaf    *leafMatcher
	present []bitRef // clauses here that exists:false depends on
	// scoped nodes are where some sub-rule has two or more clauses at or
	// below the node. When the event has an array here, each element is
	// evaluated on its own, so that fields matched for one sub-rule come
	// from the same element (the reference engine's array consistency).
	scoped     bool
	scopeRules []scopeRule
}

func (n *node) child(name []byte) *node {
	if n.kidMap != nil {
		return n.kidMap[string(name)]
	}
	for i := range n.kids {
		if n.kids[i].name == string(name) {
			return n.kids[i].n
		}
	}
	return nil
}

func (n *node) hasKids() bool { return len(n.kids) > 0 || n.kidMap != nil }

// Matcher is a compiled set of filters (FilterCriteria). It is immutable
// and safe for concurrent use.
type Matcher struct {
	root     *node
	subs     []subRule
	words    int
	filters  int
	patterns []string
	// Clause masks of the payload fields, by data key ("body", "data",
	// "kinesis.data", "value"): the clause on the key itself (leaf) and
	// clauses below it (obj).
	leafMask map[string][]uint64
	objMask  map[string][]uint64
	pool     sync.Pool
}

// Compile validates FilterCriteria patterns and compiles them into one
// Matcher. A record matches when it matches at least one pattern. No
// patterns (Lambda's "FilterCriteria": {} or "Filters": []) means no
// filtering: every record matches.
//
// Errors are *PatternError; API callers answer any of them with
// InvalidParameterValueException and InvalidPatternMessage.
func Compile(patterns []string, opts ...Option) (*Matcher, error) {
	cfg := config{maxFilters: DefaultMaxFilters}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if cfg.maxFilters > 0 && len(patterns) > cfg.maxFilters {
		return nil, &PatternError{Index: -1, Err: ErrTooManyFilters,
			Reason: fmt.Sprintf("The number of filters (%d) exceeds the limit of %d filters per event source mapping", len(patterns), cfg.maxFilters)}
	}
	if cfg.setSource && !cfg.source.SupportsFiltering() && len(patterns) > 0 {
		return nil, &PatternError{Index: -1, Reason: "Filter criteria are not supported for this event source"}
	}
	var all [][]ruleSpec
	for i, p := range patterns {
		if n := utf16Len(p); n > MaxPatternLength {
			return nil, &PatternError{Index: i, Pattern: p, Err: ErrPatternTooLong,
				Reason: fmt.Sprintf("Filter pattern has %d characters, more than the limit of %d", n, MaxPatternLength)}
		}
		rules, perr := parsePattern(p, cfg.dialect)
		if perr != nil {
			perr.Index = i
			return nil, perr
		}
		if cfg.setSource {
			if perr := checkSourceRules(cfg.source, rules); perr != nil {
				perr.Index, perr.Pattern = i, p
				return nil, perr
			}
		}
		all = append(all, rules)
	}
	m := build(all)
	m.patterns = append([]string(nil), patterns...)
	return m, nil
}

// Validate checks one pattern the way Compile does.
func Validate(pattern string, opts ...Option) error {
	_, err := Compile([]string{pattern}, opts...)
	return err
}

// utf16Len counts characters the way the Lambda API (Java strings) does:
// characters outside the Basic Multilingual Plane count twice.
func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		n++
		if r > 0xFFFF {
			n++
		}
	}
	return n
}

// checkSourceRules applies Lambda's create-time data-format rule for
// Kinesis and DynamoDB: a plain (non-JSON) pattern on the data field makes
// CreateEventSourceMapping fail.
func checkSourceRules(src Source, rules []ruleSpec) *PatternError {
	var keys []string
	switch src {
	case SourceKinesis:
		keys = []string{"data", "kinesis.data"}
	case SourceDynamoDB:
		keys = []string{"dynamodb"}
	default:
		return nil
	}
	for _, r := range rules {
		for _, k := range keys {
			if _, ok := r[k]; ok {
				return &PatternError{Reason: fmt.Sprintf("%q must be matched with a JSON pattern for this event source", k)}
			}
		}
	}
	return nil
}

// Patterns returns the patterns the Matcher was compiled from.
func (m *Matcher) Patterns() []string { return append([]string(nil), m.patterns...) }

// Filters returns the number of filters (zero means match everything).
func (m *Matcher) Filters() int { return m.filters }

type buildNode struct {
	n       *node
	kids    map[string]*buildNode
	clauses []int32           // clause bits ending here
	below   map[int32][]int32 // sub-rule -> clause bits at or below
	pats    map[string]int32
	patList []*valPat
}

func build(all [][]ruleSpec) *Matcher {
	m := &Matcher{filters: len(all), leafMask: map[string][]uint64{}, objMask: map[string][]uint64{}}
	root := &buildNode{n: &node{}, kids: map[string]*buildNode{}, below: map[int32][]int32{}}
	type clauseInfo struct {
		path   string
		absent bool
		sub    int32
	}
	var clauses []clauseInfo
	bit := int32(0)
	for fi, rules := range all {
		for _, r := range rules {
			sub := int32(len(m.subs))
			sr := subRule{filter: fi, strict: true}
			for _, path := range r.sortedPaths() {
				cl := r[path]
				b := bit
				bit++
				clauses = append(clauses, clauseInfo{path: path, absent: cl.absent, sub: sub})
				if cl.absent {
					sr.strict = false
				}
				// Walk/create the trie path; every node on it sees the clause.
				bn := root
				bn.below[sub] = append(bn.below[sub], b)
				for _, seg := range strings.Split(path, ".") {
					next := bn.kids[seg]
					if next == nil {
						next = &buildNode{n: &node{}, kids: map[string]*buildNode{}, below: map[int32][]int32{}}
						bn.kids[seg] = next
					}
					bn = next
					bn.below[sub] = append(bn.below[sub], b)
				}
				bn.clauses = append(bn.clauses, b)
				if cl.absent {
					bn.n.present = addBit(bn.n.present, b)
				}
				for _, v := range cl.values {
					bn.addPattern(v, b, sub)
				}
			}
			m.subs = append(m.subs, sr)
		}
	}
	m.words = int(bit+63) / 64
	// Sub-rule masks.
	for i := range m.subs {
		m.subs[i].words = nil
	}
	for b, ci := range clauses {
		sr := &m.subs[ci.sub]
		sr.words = addRuleWord(sr.words, int32(b), ci.absent)
	}
	// Payload masks.
	for _, key := range []string{"body", "data", "kinesis.data", "value"} {
		leaf := make([]uint64, m.words)
		obj := make([]uint64, m.words)
		for b, ci := range clauses {
			if ci.path == key {
				leaf[b/64] |= 1 << (b % 64)
			} else if strings.HasPrefix(ci.path, key+".") {
				obj[b/64] |= 1 << (b % 64)
			}
		}
		m.leafMask[key], m.objMask[key] = leaf, obj
	}
	absent := make([]bool, len(clauses))
	for b, ci := range clauses {
		absent[b] = ci.absent
	}
	m.root = root.finish(absent)
	return m
}

func addBit(refs []bitRef, b int32) []bitRef {
	w, mask := b/64, uint64(1)<<(b%64)
	for i := range refs {
		if refs[i].w == w {
			refs[i].m |= mask
			return refs
		}
	}
	return append(refs, bitRef{w: w, m: mask})
}

func addRuleWord(ws []ruleWord, b int32, absent bool) []ruleWord {
	w, mask := b/64, uint64(1)<<(b%64)
	i := len(ws) - 1
	if i < 0 || ws[i].w != w {
		ws = append(ws, ruleWord{w: w})
		i++
	}
	ws[i].all |= mask
	if absent {
		ws[i].aa |= mask
	}
	return ws
}

func (bn *buildNode) addPattern(v valueSpec, b, sub int32) {
	if bn.pats == nil {
		bn.pats = map[string]int32{}
	}
	k := v.key()
	idx, ok := bn.pats[k]
	if !ok {
		idx = int32(len(bn.patList))
		bn.pats[k] = idx
		bn.patList = append(bn.patList, &valPat{spec: v})
	}
	p := bn.patList[idx]
	p.bits = addBit(p.bits, b)
	for _, s := range p.subs {
		if s == sub {
			return
		}
	}
	p.subs = append(p.subs, sub)
}

func (bn *buildNode) finish(absent []bool) *node {
	n := bn.n
	if len(bn.patList) > 0 {
		lm := &leafMatcher{lit: [3]int32{-1, -1, -1}}
		for i, p := range bn.patList {
			idx := int32(i)
			lm.pats = append(lm.pats, *p)
			switch p.spec.kind {
			case vExact:
				if lm.exact == nil {
					lm.exact = map[string]int32{}
				}
				lm.exact[p.spec.s] = idx
			case vNumText:
				if lm.numText == nil {
					lm.numText = map[string]int32{}
				}
				lm.numText[p.spec.s] = idx
			case vNumEq:
				if lm.numEq == nil {
					lm.numEq = map[int64]int32{}
				}
				lm.numEq[p.spec.n] = idx
				lm.numeric = true
			case vEIC:
				if lm.eic == nil {
					lm.eic = map[string]int32{}
				}
				lm.eic[p.spec.s] = idx
				lm.fold = true
			case vTrue:
				lm.lit[0] = idx
			case vFalse:
				lm.lit[1] = idx
			case vNull:
				lm.lit[2] = idx
			default:
				lm.others = append(lm.others, idx)
				switch p.spec.kind {
				case vPrefixEIC, vSuffixEIC, vABEIC:
					lm.fold = true
				case vRange, vABNum:
					lm.numeric = true
				case vIP:
					lm.ip = true
				}
			}
		}
		n.leaf = lm
	}
	// Scoping: does any sub-rule have two or more clauses at or below?
	subs := make([]int32, 0, len(bn.below))
	for s := range bn.below {
		subs = append(subs, s)
	}
	sort.Slice(subs, func(i, j int) bool { return subs[i] < subs[j] })
	for _, s := range subs {
		if len(bn.below[s]) >= 2 {
			n.scoped = true
		}
	}
	if n.scoped {
		for _, s := range subs {
			sr := scopeRule{allAA: true}
			for _, b := range bn.below[s] {
				sr.words = addRuleWord(sr.words, b, absent[b])
				if !absent[b] {
					sr.allAA = false
				}
			}
			n.scopeRules = append(n.scopeRules, sr)
		}
	}
	names := make([]string, 0, len(bn.kids))
	for name := range bn.kids {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		n.kids = append(n.kids, kid{name: name, n: bn.kids[name].finish(absent)})
	}
	if len(n.kids) > 8 {
		n.kidMap = make(map[string]*node, len(n.kids))
		for _, k := range n.kids {
			n.kidMap[k.name] = k.n
		}
	}
	return n
}
