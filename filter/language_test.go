package filter

import (
	"strings"
	"testing"
)

func TestParseFixed(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		st   numStatus
	}{
		{"300", 300_000_000, numOK},
		{"300.0", 300_000_000, numOK},
		{"3.0e2", 300_000_000, numOK},
		{"3E+2", 300_000_000, numOK},
		{"-0", 0, numOK},
		{"0.000001", 1, numOK},
		{"0.0000005", 1, numOK},
		{"-0.0000005", 0, numOK},
		{"-0.0000006", -1, numOK},
		{"-122.42916360922355", -122_429_164, numOK},
		{"5e9", 5_000_000_000_000_000, numOK},
		{"-5000000000", -5_000_000_000_000_000, numOK},
		{"5000000000.000001", 0, numRange},
		{"1e20", 0, numRange},
		{"1e-30", 0, numOK},
		{"12345678901234567890123", 0, numRange},
		{"0.1234567890123456789012345", 123_457, numOK},
		{"1e999999999999", 0, numRange},
		{"1.", 0, numSyntax},
		{"-", 0, numSyntax},
		{"1e", 0, numSyntax},
		{"abc", 0, numSyntax},
	}
	for _, c := range cases {
		got, st := parseFixed([]byte(c.in))
		if st != c.st || (st == numOK && got != c.want) {
			t.Errorf("parseFixed(%q) = %d, %d; want %d, %d", c.in, got, st, c.want, c.st)
		}
	}
}

func TestWildcard(t *testing.T) {
	cases := []struct {
		pat, v string
		want   bool
	}{
		{"*", "", true},
		{"*", "anything", true},
		{"a*", "abc", true},
		{"*c", "abc", true},
		{"a*c", "ac", true},
		{"a*b*c", "aXbYc", true},
		{"a*b*c", "aXcYb", false},
		{"ab*ab", "ab", false},
		{"ab*ab", "abab", true},
		{`a\*b`, "a*b", true},
		{`a\*b`, "aXb", false},
		{`a\\b`, `a\b`, true},
		{"/Users/*/doc.txt", "/Users/x/dir/doc.txt", true},
	}
	for _, c := range cases {
		w, reason := compileWildcard(c.pat)
		if reason != "" {
			t.Fatalf("%q: %s", c.pat, reason)
		}
		if got := w.match([]byte(c.v)); got != c.want {
			t.Errorf("wildcard %q on %q = %v, want %v", c.pat, c.v, got, c.want)
		}
	}
	for pat, want := range map[string]string{
		"a**":   "Consecutive wildcard characters at pos 2",
		`a\b`:   "Invalid escape character at pos 2",
		`ab\`:   "Invalid escape character at pos 3",
		"**":    "Consecutive wildcard characters at pos 1",
		"x*y**": "Consecutive wildcard characters at pos 4",
	} {
		if _, reason := compileWildcard(pat); reason != want {
			t.Errorf("%q: %q, want %q", pat, reason, want)
		}
	}
}

func TestCIDRErrors(t *testing.T) {
	for cidr, want := range map[string]string{
		"10.0.0.0/32":          "IPv4 mask bits must be < 32",
		"10.0.0.0/-1":          "Malformed CIDR, mask bits must not be negative",
		"10.0.0.0":             "Malformed CIDR, one '/' required",
		"10.0.0.0/":            "Malformed CIDR, one '/' required",
		"a/b/c":                "Malformed CIDR, one '/' required",
		"::/128":               "IPv6 mask bits must be < 128",
		"300.0.0.1/8":          "Invalid IP address: 300.0.0.1",
		"host.name/8":          "Nonstandard IP address: host.name",
		"10.0.0.0/x":           "Malformed CIDR, mask bits must be an integer",
		"1:2:3:4:5:6:7:8:9/64": "Invalid IP address: 1:2:3:4:5:6:7:8:9",
	} {
		if _, reason := parseCIDR(cidr); reason != want {
			t.Errorf("%q: %q, want %q", cidr, reason, want)
		}
	}
}

// TestLanguage covers operator semantics beyond the recorded cases.
func TestLanguage(t *testing.T) {
	cases := []struct {
		name, pattern, event string
		want                 bool
	}{
		{"number equals float", `{"n":[300]}`, `{"n":3.0e2}`, true},
		{"number not string", `{"n":[300]}`, `{"n":"300"}`, false},
		{"string not number", `{"n":["300"]}`, `{"n":300}`, false},
		{"huge number by text", `{"n":[12345678901234567890]}`, `{"n":12345678901234567890}`, true},
		{"huge number other text", `{"n":[12345678901234567890]}`, `{"n":1.2345678901234567890e19}`, false},
		{"numeric range open", `{"n":[{"numeric":[">",0,"<",10]}]}`, `{"n":10}`, false},
		{"numeric range closed", `{"n":[{"numeric":[">=",0,"<=",10]}]}`, `{"n":10}`, true},
		{"numeric equals", `{"n":[{"numeric":["=",5]}]}`, `{"n":5.0}`, true},
		{"numeric on string", `{"n":[{"numeric":[">",0]}]}`, `{"n":"5"}`, false},
		{"numeric out of range event", `{"n":[{"numeric":[">",0]}]}`, `{"n":1e10}`, false},
		{"numeric in array", `{"n":[{"numeric":["<",0]}]}`, `{"n":[1,2,-3]}`, true},
		{"null", `{"n":[null]}`, `{"n":null}`, true},
		{"null missing", `{"n":[null]}`, `{}`, false},
		{"empty string", `{"n":[""]}`, `{"n":""}`, true},
		{"true", `{"b":[true]}`, `{"b":true}`, true},
		{"true not string", `{"b":[true]}`, `{"b":"true"}`, false},
		{"exists null", `{"n":[{"exists":true}]}`, `{"n":null}`, true},
		{"exists object", `{"n":[{"exists":true}]}`, `{"n":{"a":1}}`, false},
		{"exists false object", `{"n":[{"exists":false}]}`, `{"n":{"a":1}}`, true},
		{"exists false empty array", `{"n":[{"exists":false}]}`, `{"n":[]}`, true},
		{"exists false array elem", `{"d":{"b":[{"exists":false}]}}`, `{"d":[{"a":1},{"b":2}]}`, false},
		{"anything-but number vs string", `{"n":[{"anything-but":[1,2]}]}`, `{"n":"1"}`, true},
		{"anything-but number numerically", `{"n":[{"anything-but":[1,2]}]}`, `{"n":1.0}`, false},
		{"anything-but array any element", `{"n":[{"anything-but":"a"}]}`, `{"n":["a","b"]}`, true},
		{"anything-but array all excluded", `{"n":[{"anything-but":"a"}]}`, `{"n":["a","a"]}`, false},
		{"anything-but bool", `{"n":[{"anything-but":"a"}]}`, `{"n":false}`, true},
		{"anything-but missing", `{"n":[{"anything-but":"a"}]}`, `{}`, false},
		{"eic unicode", `{"n":[{"equals-ignore-case":"ÉCOLE"}]}`, `{"n":"école"}`, true},
		{"prefix eic unicode", `{"n":[{"prefix":{"equals-ignore-case":"STRA"}}]}`, `{"n":"straße"}`, true},
		{"prefix not number", `{"n":[{"prefix":"1"}]}`, `{"n":12}`, false},
		{"suffix empty", `{"n":[{"suffix":""}]}`, `{"n":"x"}`, true},
		{"cidr v4", `{"ip":[{"cidr":"10.0.0.0/8"}]}`, `{"ip":"10.200.3.4"}`, true},
		{"cidr v4 out", `{"ip":[{"cidr":"10.0.0.0/8"}]}`, `{"ip":"11.0.0.1"}`, false},
		{"cidr from host bits", `{"ip":[{"cidr":"10.0.0.5/24"}]}`, `{"ip":"10.0.0.4"}`, false},
		{"cidr v6 vs v4", `{"ip":[{"cidr":"::/0"}]}`, `{"ip":"10.0.0.1"}`, false},
		{"cidr not ip", `{"ip":[{"cidr":"10.0.0.0/8"}]}`, `{"ip":"hello"}`, false},
		{"ip literal value", `{"ip":["2001:db8::1"]}`, `{"ip":"2001:0db8:0:0:0:0:0:1"}`, true},
		{"wildcard", `{"s":[{"wildcard":"*.png"}]}`, `{"s":"a.png"}`, true},
		{"exactly", `{"s":[{"exactly":"10.0.0.1"}]}`, `{"s":"10.0.0.1"}`, true},
		{"dotted event key", `{"a":{"b":{"c":["x"]}}}`, `{"a.b":{"c":"x"}}`, true},
		{"dotted pattern key", `{"a.b.c":["x"]}`, `{"a":{"b.c":"x"}}`, true},
		{"escaped key", `{"a\"b":["x"]}`, `{"a\u0022b":"x"}`, true},
		{"escaped value", `{"s":["é\n"]}`, `{"s":"\u00e9\n"}`, true},
		{"surrogate pair", `{"s":["🚀"]}`, `{"s":"\ud83d\ude80"}`, true},
		{"or nested", `{"$or":[{"a":["1"]},{"$or":[{"b":["2"]},{"c":["3"]}]}]}`, `{"c":"3"}`, true},
		{"or with shared field", `{"x":["1"],"$or":[{"a":["1"]},{"b":["2"]}]}`, `{"x":"1","b":"2"}`, true},
		{"or with shared field missing", `{"x":["1"],"$or":[{"a":["1"]},{"b":["2"]}]}`, `{"b":"2"}`, false},
		{"nested arrays", `{"a":["x"]}`, `{"a":[["y"],["x"]]}`, true},
		{"duplicate event key", `{"a":["2"]}`, `{"a":"1","a":"2"}`, true},
		{"absent or value", `{"s":[{"exists":false},"x"]}`, `{"s":"x"}`, true},
		{"absent or value 2", `{"s":[{"exists":false},"x"]}`, `{"s":"y"}`, false},
		{"absent or value 3", `{"s":[{"exists":false},"x"]}`, `{}`, true},
		{"or-exists in array", `{"d":{"a":["1"],"b":[{"exists":false},"2"]}}`, `{"d":[{"a":"1","b":"3"},{"a":"1"}]}`, true},
		{"or-exists in array 2", `{"d":{"a":["1"],"b":[{"exists":false},"2"]}}`, `{"d":[{"a":"1","b":"3"},{"a":"2"}]}`, false},
	}
	for _, c := range cases {
		if got := mustMatch(t, EventBridge, []string{c.pattern}, SourceNone, []byte(c.event)); got != c.want {
			t.Errorf("%s: got %v, want %v\npattern %s\nevent %s", c.name, got, c.want, c.pattern, c.event)
		}
	}
}

func TestPatternErrors(t *testing.T) {
	cases := map[string]string{
		`{"a":[{"numeric":["=",1e10]}]}`:          "Value must be between -5.0E9 and 5.0E9, inclusive",
		`{"a":[{"numeric":["<",1,"<",2]}]}`:       "Too many elements in numeric expression",
		`{"a":[{"numeric":[">",1,"<"]}]}`:         "Value of < must be numeric",
		`{"a":[{"numeric":[">",1,5]}]}`:           "Bad value in numeric range: 5",
		`{"a":[{"numeric":["~",1]}]}`:             "Unrecognized numeric range operator: ~",
		`{"a":[{"numeric":[1]}]}`:                 "Invalid member in numeric match: 1",
		`{"a":[{"numeric":5}]}`:                   "Value of numeric must be an array.",
		`{"a":[{"foo":"x"}]}`:                     "Unrecognized match type foo",
		`{"a":[{}]}`:                              "Match expression name not found",
		`{"a":[{"prefix":"x","suffix":"y"}]}`:     "Only one key allowed in match expression",
		`{"a":[{"exists":"yes"}]}`:                "exists match pattern must be either true or false.",
		`{"a":[["x"]]}`:                           "Match value must be String, number, true, false, or null",
		`{"a":{}}`:                                "Empty objects are not allowed",
		`{"a":[{"anything-but":["a",1]}]}`:        "Inside anything but list, either all values are number or string, mixed type is not supported",
		`{"a":[{"anything-but":[true]}]}`:         "Inside anything but list, start|null|boolean is not supported.",
		`{"a":[{"anything-but":{"foo":"x"}}]}`:    "Unsupported anything-but pattern: foo",
		`{"a":[{"prefix":{"foo":"x"}}]}`:          "Unsupported prefix pattern: foo",
		`{"$or":[{"a":["1"]}]}`:                   "Unrecognized match type a",
		`{"$or":[{"a":["1"]},{"numeric":["1"]}]}`: "Unrecognized match type a", // retried with "$or" as a field
		`{"a":[1],}`:                              "Unexpected character ('}' (code 125)): was expecting double-quote to start field name",
		`{"a":[1]} x`:                             "Unexpected character ('x' (code 120)): expected end-of-input",
		`{"a":[01]}`:                              "Invalid numeric value: 01",
		`{"a":[1]`:                                "Unexpected end-of-input: expected close marker for OBJECT",
	}
	for p, want := range cases {
		err := Validate(p, WithDialect(EventBridge))
		pe, ok := err.(*PatternError)
		if !ok {
			t.Errorf("%s: want *PatternError, got %v", p, err)
			continue
		}
		if pe.Reason != want {
			t.Errorf("%s:\n got %q\nwant %q", p, pe.Reason, want)
		}
		if !strings.HasPrefix(pe.Message(), "Event pattern is not valid. Reason: ") {
			t.Errorf("%s: message %q", p, pe.Message())
		}
	}
	if err := Validate(`{"a":[{"anything-but":{"prefix":"x"}}]}`); err == nil {
		t.Error("Lambda dialect accepted anything-but prefix")
	}
	if err := Validate(`{"a":[{"anything-but":{"prefix":"x"}}]}`, WithDialect(EventBridge)); err != nil {
		t.Errorf("EventBridge dialect rejected anything-but prefix: %v", err)
	}
}

// TestDistinctAlternativesSameField guards the per-field deduplication of
// alternatives: every operator kind, several operands on one field.
func TestDistinctAlternativesSameField(t *testing.T) {
	groups := map[string][]string{
		"wildcard":    {`{"wildcard":"a*"}`, `{"wildcard":"*z"}`, `{"wildcard":"m*m"}`},
		"prefix":      {`{"prefix":"a"}`, `{"prefix":"q"}`, `{"prefix":"m"}`},
		"suffix":      {`{"suffix":"a"}`, `{"suffix":"z"}`, `{"suffix":"m"}`},
		"eic":         {`{"equals-ignore-case":"AB"}`, `{"equals-ignore-case":"XZ"}`, `{"equals-ignore-case":"MM"}`},
		"prefix-eic":  {`{"prefix":{"equals-ignore-case":"A"}}`, `{"prefix":{"equals-ignore-case":"Q"}}`, `{"prefix":{"equals-ignore-case":"M"}}`},
		"suffix-eic":  {`{"suffix":{"equals-ignore-case":"B"}}`, `{"suffix":{"equals-ignore-case":"Z"}}`, `{"suffix":{"equals-ignore-case":"M"}}`},
		"cidr":        {`{"cidr":"10.0.0.0/8"}`, `{"cidr":"11.0.0.0/8"}`, `{"cidr":"12.0.0.0/8"}`},
		"ab-wildcard": {`{"anything-but":{"wildcard":"*"}}`, `{"anything-but":{"wildcard":"*"}}`, `{"anything-but":{"wildcard":"nope"}}`},
	}
	events := map[string]string{
		"wildcard": `"mxm"`, "prefix": `"mm"`, "suffix": `"mm"`, "eic": `"mm"`, "prefix-eic": `"mm"`,
		"suffix-eic": `"mm"`, "cidr": `"12.1.2.3"`, "ab-wildcard": `"mm"`,
	}
	for name, alts := range groups {
		var pats []string
		for _, a := range alts {
			pats = append(pats, `{"f":[`+a+`]}`)
		}
		if !mustMatch(t, EventBridge, pats, SourceNone, []byte(`{"f":`+events[name]+`}`)) {
			t.Errorf("%s: third alternative lost", name)
		}
	}
}
