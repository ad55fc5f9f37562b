package filter

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
)

// A naive reference matcher, written straight from the semantics in the
// package documentation (flatten the event into leaves with their array
// memberships, expand $or, search for a consistent choice of leaves), used
// to cross-check the compiled matcher on random patterns and events.

type refLeaf struct {
	path string
	val  any // string, json.Number, bool, nil
	mem  map[int]int
}

func refFlatten(v any, path string, mem map[int]int, next *int, out *[]refLeaf) {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			p := k
			if path != "" {
				p = path + "." + k
			}
			refFlatten(c, p, mem, next, out)
		}
	case []any:
		*next++
		id := *next
		for i, c := range x {
			m := make(map[int]int, len(mem)+1)
			for a, b := range mem {
				m[a] = b
			}
			m[id] = i
			refFlatten(c, path, m, next, out)
		}
	default:
		*out = append(*out, refLeaf{path, x, mem})
	}
}

type refClause struct {
	path   string
	alts   []any
	absent bool
}

func refRules(obj map[string]any, path string, rules [][]refClause) [][]refClause {
	// The generator writes "$or" after the other keys; process in that
	// order, since a path written later replaces one written earlier.
	keys := make([]string, 0, len(obj))
	for k := range obj {
		if k != "$or" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	if _, ok := obj["$or"]; ok {
		keys = append(keys, "$or")
	}
	for _, k := range keys {
		v := obj[k]
		if k == "$or" {
			var all [][]refClause
			for _, br := range v.([]any) {
				base := make([][]refClause, len(rules))
				copy(base, rules)
				if len(base) == 0 {
					base = [][]refClause{nil}
				}
				all = append(all, refRules(br.(map[string]any), path, base)...)
			}
			rules = all
			continue
		}
		p := k
		if path != "" {
			p = path + "." + k
		}
		switch x := v.(type) {
		case map[string]any:
			rules = refRules(x, p, rules)
		case []any:
			c := refClause{path: p}
			for _, a := range x {
				if m, ok := a.(map[string]any); ok {
					if e, ok := m["exists"]; ok && e == false {
						c.absent = true
						continue
					}
				}
				c.alts = append(c.alts, a)
			}
			if len(rules) == 0 {
				rules = [][]refClause{nil}
			}
			for i := range rules {
				var out []refClause
				for _, old := range rules[i] {
					if old.path != p {
						out = append(out, old)
					}
				}
				rules[i] = append(out, c)
			}
		}
	}
	return rules
}

func refNum(v any) (*big.Rat, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return nil, false
	}
	r, ok := new(big.Rat).SetString(string(n))
	return r, ok
}

func refSatisfies(alt any, v any) bool {
	switch a := alt.(type) {
	case string:
		s, ok := v.(string)
		return ok && s == a
	case json.Number:
		x, ok1 := refNum(v)
		y, ok2 := refNum(a)
		return ok1 && ok2 && x.Cmp(y) == 0
	case bool:
		b, ok := v.(bool)
		return ok && b == a
	case nil:
		return v == nil
	case map[string]any:
		for op, arg := range a {
			s, isStr := v.(string)
			switch op {
			case "prefix":
				return isStr && strings.HasPrefix(s, arg.(string))
			case "suffix":
				return isStr && strings.HasSuffix(s, arg.(string))
			case "equals-ignore-case":
				return isStr && strings.EqualFold(s, arg.(string))
			case "exists":
				return true
			case "anything-but":
				switch x := arg.(type) {
				case string:
					return !(isStr && s == x)
				case []any:
					for _, e := range x {
						if refSatisfies(e, v) {
							return false
						}
					}
					return true
				}
			case "numeric":
				n, ok := refNum(v)
				if !ok {
					return false
				}
				ops := arg.([]any)
				for i := 0; i < len(ops); i += 2 {
					lim, _ := refNum(ops[i+1])
					c := n.Cmp(lim)
					switch ops[i].(string) {
					case ">":
						ok = ok && c > 0
					case ">=":
						ok = ok && c >= 0
					case "<":
						ok = ok && c < 0
					case "<=":
						ok = ok && c <= 0
					case "=":
						ok = ok && c == 0
					}
				}
				return ok
			}
		}
	}
	return false
}

func consistent(a, b map[int]int) bool {
	for k, v := range a {
		if w, ok := b[k]; ok && w != v {
			return false
		}
	}
	return true
}

func refMatchRule(rule []refClause, leaves []refLeaf) bool {
	var try func(k int, mem map[int]int, absent []string) bool
	try = func(k int, mem map[int]int, absent []string) bool {
		if k == len(rule) {
			for _, p := range absent {
				for _, l := range leaves {
					if l.path == p && consistent(l.mem, mem) {
						return false
					}
				}
			}
			return true
		}
		c := rule[k]
		for _, l := range leaves {
			if l.path != c.path || !consistent(l.mem, mem) {
				continue
			}
			for _, a := range c.alts {
				if refSatisfies(a, l.val) {
					m := make(map[int]int, len(mem)+len(l.mem))
					for x, y := range mem {
						m[x] = y
					}
					for x, y := range l.mem {
						m[x] = y
					}
					if try(k+1, m, absent) {
						return true
					}
					break
				}
			}
		}
		return c.absent && try(k+1, mem, append(absent[:len(absent):len(absent)], c.path))
	}
	return try(0, map[int]int{}, nil)
}

func refMatch(pattern string, event []byte) bool {
	var p map[string]any
	d := json.NewDecoder(strings.NewReader(pattern))
	d.UseNumber()
	if d.Decode(&p) != nil {
		panic("bad pattern " + pattern)
	}
	var e any
	d = json.NewDecoder(bytes.NewReader(event))
	d.UseNumber()
	if d.Decode(&e) != nil {
		panic("bad event")
	}
	var leaves []refLeaf
	n := 0
	refFlatten(e, "", map[int]int{}, &n, &leaves)
	for _, r := range refRules(p, "", nil) {
		if refMatchRule(r, leaves) {
			return true
		}
	}
	return false
}

// Random generators over a small vocabulary, so that matches are common.

var (
	genKeys    = []string{"a", "b", "c"}
	genScalars = []string{`"x"`, `"y"`, `"xy"`, `"X"`, `""`, `1`, `2`, `2.0`, `-1`, `true`, `false`, `null`}
	genAlts    = []string{`"x"`, `"y"`, `""`, `1`, `2`, `2e0`, `true`, `null`, `{"prefix":"x"}`, `{"suffix":"y"}`, `{"prefix":""}`,
		`{"anything-but":["x","y"]}`, `{"numeric":["=",2]}`,
		`{"exists":true}`, `{"exists":false}`, `{"anything-but":"x"}`, `{"anything-but":[1,2]}`,
		`{"numeric":[">",1]}`, `{"numeric":["<=",1]}`, `{"numeric":[">=",-1,"<",2]}`, `{"equals-ignore-case":"X"}`}
)

func genEvent(r *rand.Rand, depth int) string {
	var b strings.Builder
	b.WriteByte('{')
	perm := r.Perm(len(genKeys))[:1+r.IntN(len(genKeys))]
	for i, k := range perm {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%q:%s", genKeys[k], genValue(r, depth))
	}
	b.WriteByte('}')
	return b.String()
}

func genValue(r *rand.Rand, depth int) string {
	switch x := r.IntN(10); {
	case depth < 3 && x < 3:
		return genEvent(r, depth+1)
	case depth < 3 && x < 5:
		n := r.IntN(4)
		parts := make([]string, n)
		for i := range parts {
			parts[i] = genValue(r, depth+1)
		}
		return "[" + strings.Join(parts, ",") + "]"
	}
	return genScalars[r.IntN(len(genScalars))]
}

func genPattern(r *rand.Rand, depth int) string {
	var b strings.Builder
	b.WriteByte('{')
	perm := r.Perm(len(genKeys))[:1+r.IntN(2)]
	for i, k := range perm {
		if i > 0 {
			b.WriteByte(',')
		}
		if depth < 2 && r.IntN(4) == 0 {
			fmt.Fprintf(&b, "%q:%s", genKeys[k], genPattern(r, depth+1))
			continue
		}
		n := 1 + r.IntN(2)
		alts := make([]string, n)
		for j := range alts {
			alts[j] = genAlts[r.IntN(len(genAlts))]
		}
		fmt.Fprintf(&b, "%q:[%s]", genKeys[k], strings.Join(alts, ","))
	}
	if depth < 2 && r.IntN(6) == 0 {
		fmt.Fprintf(&b, `,"$or":[%s,%s]`, genPattern(r, depth+1), genPattern(r, depth+1))
	}
	b.WriteByte('}')
	return b.String()
}

func differential(t *testing.T, seed uint64) {
	r := rand.New(rand.NewPCG(seed, seed*31+7))
	patterns := make([]string, 1+r.IntN(3))
	for i := range patterns {
		patterns[i] = genPattern(r, 0)
	}
	m, err := Compile(patterns)
	if err != nil {
		t.Fatalf("compile %v: %v", patterns, err)
	}
	for i := 0; i < 8; i++ {
		ev := genEvent(r, 0)
		got, err := m.Match(SourceNone, []byte(ev))
		if err != nil {
			t.Fatalf("match %s: %v", ev, err)
		}
		want := false
		for _, p := range patterns {
			want = want || refMatch(p, []byte(ev))
		}
		if got != want {
			t.Fatalf("seed %d: got %v, reference %v\npatterns %s\nevent    %s", seed, got, want, strings.Join(patterns, "\n         "), ev)
		}
	}
}

func TestDifferential(t *testing.T) {
	n := uint64(1500)
	if testing.Short() {
		n = 300
	}
	for seed := uint64(0); seed < n; seed++ {
		differential(t, seed)
	}
}

// FuzzDifferential explores more random pattern/event pairs.
func FuzzDifferential(f *testing.F) {
	f.Add(uint64(1))
	f.Fuzz(func(t *testing.T, seed uint64) { differential(t, seed) })
}
