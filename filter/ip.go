package filter

import (
	"bytes"
	"net/netip"
	"strconv"
	"strings"
)

// ipAddr is an IPv4 (n == 4) or IPv6 (n == 16) address in network order.
type ipAddr struct {
	b [16]byte
	n uint8
}

// ipRange is an inclusive range of addresses of one family, as the
// reference engine builds it for "cidr" and for plain IP-literal values.
type ipRange struct {
	lo, hi ipAddr
}

func (r *ipRange) contains(a *ipAddr) bool {
	if a.n != r.lo.n {
		return false
	}
	n := int(a.n)
	return bytes.Compare(a.b[:n], r.lo.b[:n]) >= 0 && bytes.Compare(a.b[:n], r.hi.b[:n]) <= 0
}

// looksLikeIPv4 and looksLikeIPv6 are the reference engine's pre-checks
// ([0-9]+.[0-9]+.[0-9]+.[0-9]+ and [0-9a-fA-F:]*:[0-9a-fA-F:]*); a string
// that passes neither is a "Nonstandard IP address".
func looksLikeIPv4(s []byte) bool {
	parts := 0
	run := 0
	for _, c := range s {
		switch {
		case c >= '0' && c <= '9':
			run++
		case c == '.':
			if run == 0 {
				return false
			}
			parts++
			run = 0
		default:
			return false
		}
	}
	return parts == 3 && run > 0
}

func looksLikeIPv6(s []byte) bool {
	colon := false
	for _, c := range s {
		switch {
		case c == ':':
			colon = true
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f', c >= 'A' && c <= 'F':
		default:
			return false
		}
	}
	return colon
}

type ipStatus uint8

const (
	ipOK ipStatus = iota
	ipNonstandard
	ipInvalid
)

// parseIP parses an address the way the reference engine accepts it. It
// does not allocate for IPv4.
func parseIP(s []byte) (ipAddr, ipStatus) {
	var a ipAddr
	if looksLikeIPv4(s) {
		part, val, digits := 0, 0, 0
		for _, c := range s {
			if c == '.' {
				a.b[part] = byte(val)
				part++
				val, digits = 0, 0
				continue
			}
			digits++
			val = val*10 + int(c-'0')
			if val > 255 || digits > 10 {
				return a, ipInvalid
			}
		}
		a.b[3] = byte(val)
		a.n = 4
		return a, ipOK
	}
	if looksLikeIPv6(s) {
		p, err := netip.ParseAddr(string(s))
		if err != nil || p.Zone() != "" {
			return a, ipInvalid
		}
		if p.Is4In6() {
			p = p.Unmap()
		}
		if p.Is4() {
			v := p.As4()
			copy(a.b[:], v[:])
			a.n = 4
			return a, ipOK
		}
		a.b = p.As16()
		a.n = 16
		return a, ipOK
	}
	return a, ipNonstandard
}

// parseCIDR validates a "cidr" operand with the reference engine's messages
// and builds its range. Like the reference engine, the range starts at the
// address as written (host bits are not cleared).
func parseCIDR(s string) (ipRange, string) {
	parts := strings.Split(s, "/")
	for len(parts) > 0 && parts[len(parts)-1] == "" {
		parts = parts[:len(parts)-1] // Java's String.split drops trailing empties
	}
	if len(parts) != 2 {
		return ipRange{}, "Malformed CIDR, one '/' required"
	}
	bits, err := strconv.ParseInt(parts[1], 10, 32)
	if err != nil {
		return ipRange{}, "Malformed CIDR, mask bits must be an integer"
	}
	if bits < 0 {
		return ipRange{}, "Malformed CIDR, mask bits must not be negative"
	}
	a, st := parseIP([]byte(parts[0]))
	switch st {
	case ipNonstandard:
		return ipRange{}, "Nonstandard IP address: " + parts[0]
	case ipInvalid:
		return ipRange{}, "Invalid IP address: " + parts[0]
	}
	if a.n == 4 && bits > 31 {
		return ipRange{}, "IPv4 mask bits must be < 32"
	}
	if a.n == 16 && bits > 127 {
		return ipRange{}, "IPv6 mask bits must be < 128"
	}
	r := ipRange{lo: a, hi: a}
	host := int(a.n)*8 - int(bits)
	for i := int(a.n) - 1; i >= 0 && host > 0; i-- {
		if host >= 8 {
			r.hi.b[i] = 0xff
		} else {
			r.hi.b[i] |= byte(1<<host - 1)
		}
		host -= 8
	}
	return r, ""
}
