package filter

// Numbers are compared the way the reference engine (aws/event-ruler's
// ComparableNumber) compares them: as decimals rounded to six places and
// scaled by 10^6 into an int64, which is exact for every value in
// [-5e9, 5e9] that has at most six digits after the decimal point. Values
// outside the range are not "comparable": a pattern that needs them
// numerically is rejected, and an event value outside it can only match by
// its literal text.

const (
	fixedDecimals = 6
	fixedScale    = 1_000_000
	maxFixed      = 5_000_000_000 * fixedScale
)

// numStatus says why a number is or is not comparable.
type numStatus uint8

const (
	numOK numStatus = iota
	numSyntax
	numRange
)

var pow10 = [20]uint64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19}

// Reasons the reference engine gives for a number it cannot compare.
const (
	reasonNumRange = "Value must be between -5.0E9 and 5.0E9, inclusive"
)

func (s numStatus) reason() string {
	switch s {
	case numRange:
		return reasonNumRange
	}
	return "Invalid numeric value"
}

// parseFixed parses a JSON number literal into its value times 10^6. It
// allocates nothing and never uses floating point, so 300, 300.0 and 3.0e2
// all give the same result.
func parseFixed(b []byte) (int64, numStatus) {
	i := 0
	neg := false
	if i < len(b) && b[i] == '-' {
		neg = true
		i++
	}
	var mant uint64
	sig := 0        // significant digits kept in mant
	exp := 0        // decimal exponent applied to mant
	digits := false // saw at least one digit
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		digits = true
		d := uint64(b[i] - '0')
		if sig == 0 && d == 0 {
			continue
		}
		if sig < 19 {
			mant = mant*10 + d
			sig++
		} else {
			exp++ // beyond 19 digits only the magnitude matters
		}
	}
	if i < len(b) && b[i] == '.' {
		i++
		frac := false
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			frac = true
			d := uint64(b[i] - '0')
			if sig == 0 && d == 0 {
				exp--
				continue
			}
			if sig < 19 {
				mant = mant*10 + d
				sig++
				exp--
			}
		}
		if !frac {
			return 0, numSyntax
		}
	}
	if !digits {
		return 0, numSyntax
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		eneg := false
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			eneg = b[i] == '-'
			i++
		}
		e := 0
		edig := false
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			edig = true
			if e < 100000 {
				e = e*10 + int(b[i]-'0')
			}
		}
		if !edig {
			return 0, numSyntax
		}
		if eneg {
			e = -e
		}
		exp += e
	}
	if i != len(b) {
		return 0, numSyntax
	}
	if mant == 0 {
		return 0, numOK
	}
	for mant%10 == 0 {
		mant /= 10
		exp++
	}
	shift := exp + fixedDecimals
	if shift > 16 {
		return 0, numRange
	}
	if shift < 0 {
		// More than six decimals: round to the nearest millionth the way
		// the reference engine does (Math.round, halves toward +Inf).
		k := -shift
		if k > 19 {
			return 0, numOK // |value| < 1e-7 rounds to zero
		}
		p := pow10[k]
		q, r := mant/p, mant%p
		if (!neg && 2*r >= p) || (neg && 2*r > p) {
			q++
		}
		if q > maxFixed {
			return 0, numRange
		}
		if neg {
			return -int64(q), numOK
		}
		return int64(q), numOK
	}
	v := mant
	for ; shift > 0; shift-- {
		if v > maxFixed/10+1 {
			return 0, numRange
		}
		v *= 10
	}
	if v > maxFixed {
		return 0, numRange
	}
	if neg {
		return -int64(v), numOK
	}
	return int64(v), numOK
}
