package filter

// leaf evaluates one scalar value found at trie node n. kind is 's'
// (string, v is its decoded text), 'n' (number, v is the literal), 't',
// 'f' or 'z' (true, false, null).
func (s *state) leaf(n *node, kind byte, v []byte) {
	for _, r := range n.present {
		s.pres[r.w] |= r.m
	}
	lm := n.leaf
	if lm == nil {
		return
	}
	switch kind {
	case 's':
		s.leafString(lm, v)
	case 'n':
		s.leafNumber(lm, v)
	default:
		li := 0
		switch kind {
		case 'f':
			li = 1
		case 'z':
			li = 2
		}
		if p := lm.lit[li]; p >= 0 {
			s.hit(&lm.pats[p])
		}
		for _, p := range lm.others {
			switch pt := &lm.pats[p]; pt.spec.kind {
			case vExists, vABStr, vABNum, vABPrefix, vABSuffix, vABEIC, vABWildcard:
				// Anything-but matches every value that is not one of its
				// operands, including non-strings.
				s.hit(pt)
			}
		}
	}
}

func (s *state) hit(p *valPat) {
	for _, r := range p.bits {
		s.sat[r.w] |= r.m
	}
	if s.scopes == 0 {
		for _, sub := range p.subs {
			r := &s.m.subs[sub]
			if r.strict && s.complete(r) {
				s.matched = true
				return
			}
		}
	}
}

func (s *state) leafString(lm *leafMatcher, v []byte) {
	if lm.exact != nil {
		if p, ok := lm.exact[string(v)]; ok {
			s.hit(&lm.pats[p])
		}
	}
	var folded []byte
	if lm.fold {
		s.foldBuf = foldAppend(s.foldBuf[:0], v)
		folded = s.foldBuf
		if lm.eic != nil {
			if p, ok := lm.eic[string(folded)]; ok {
				s.hit(&lm.pats[p])
			}
		}
	}
	var addr ipAddr
	addrOK := false
	if lm.ip {
		a, st := parseIP(v)
		addr, addrOK = a, st == ipOK
	}
	for _, p := range lm.others {
		pt := &lm.pats[p]
		sp := &pt.spec
		ok := false
		switch sp.kind {
		case vPrefix:
			ok = hasPrefix(v, sp.s)
		case vSuffix:
			ok = hasSuffix(v, sp.s)
		case vPrefixEIC:
			ok = hasPrefix(folded, sp.s)
		case vSuffixEIC:
			ok = hasSuffix(folded, sp.s)
		case vWildcard:
			ok = sp.wc.match(v)
		case vIP:
			ok = addrOK && sp.ip.contains(&addr)
		case vExists, vABNum:
			ok = true
		case vABStr:
			ok = !inSet(sp.set, v)
		case vABEIC:
			ok = !inSet(sp.set, folded)
		case vABPrefix:
			ok = true
			for _, x := range sp.set {
				if hasPrefix(v, x) {
					ok = false
					break
				}
			}
		case vABSuffix:
			ok = true
			for _, x := range sp.set {
				if hasSuffix(v, x) {
					ok = false
					break
				}
			}
		case vABWildcard:
			ok = true
			for _, w := range sp.wcs {
				if w.match(v) {
					ok = false
					break
				}
			}
		}
		if ok {
			s.hit(pt)
			if s.matched {
				return
			}
		}
	}
}

func inSet(set []string, v []byte) bool {
	for _, x := range set {
		if string(v) == x {
			return true
		}
	}
	return false
}

func (s *state) leafNumber(lm *leafMatcher, v []byte) {
	if lm.numText != nil {
		if p, ok := lm.numText[string(v)]; ok {
			s.hit(&lm.pats[p])
		}
	}
	var num int64
	isNum := false
	if lm.numeric {
		n, st := parseFixed(v)
		num, isNum = n, st == numOK
		if isNum && lm.numEq != nil {
			if p, ok := lm.numEq[num]; ok {
				s.hit(&lm.pats[p])
			}
		}
	}
	for _, p := range lm.others {
		pt := &lm.pats[p]
		sp := &pt.spec
		ok := false
		switch sp.kind {
		case vRange:
			ok = isNum && (!sp.hasLo || num > sp.lo || (!sp.openLo && num == sp.lo)) &&
				(!sp.hasHi || num < sp.hi || (!sp.openHi && num == sp.hi))
		case vExists, vABStr, vABPrefix, vABSuffix, vABEIC, vABWildcard:
			ok = true
		case vABNum:
			ok = true
			if isNum {
				for _, x := range sp.nums {
					if x == num {
						ok = false
						break
					}
				}
			}
		}
		if ok {
			s.hit(pt)
			if s.matched {
				return
			}
		}
	}
}

// hasPrefix and hasSuffix compare without converting p to []byte, which
// could allocate.
func hasPrefix(v []byte, p string) bool {
	return len(v) >= len(p) && string(v[:len(p)]) == p
}

func hasSuffix(v []byte, p string) bool {
	return len(v) >= len(p) && string(v[len(v)-len(p):]) == p
}
