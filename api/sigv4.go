package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/esmd/esmd/esm"
)

// Authentication exceptions, as the Lambda front end names them.
const (
	ErrTypeMissingToken        = "MissingAuthenticationTokenException"
	ErrTypeIncompleteSignature = "IncompleteSignatureException"
	ErrTypeInvalidSignature    = "InvalidSignatureException"
	ErrTypeUnrecognizedClient  = "UnrecognizedClientException"
)

const (
	// SigningService is the service name in the credential scope that
	// esmd accepts: the one the Lambda clients sign for.
	SigningService = "lambda"
	// MaxClockSkew is how far X-Amz-Date may be from esmd's clock, as AWS
	// allows.
	MaxClockSkew = 5 * time.Minute

	sigAlgorithm    = "AWS4-HMAC-SHA256"
	amzDateFormat   = "20060102T150405Z"
	unsignedPayload = "UNSIGNED-PAYLOAD"
	maxPresignSecs  = 7 * 24 * 60 * 60
)

// Verifier checks AWS Signature Version 4 on API requests, with the
// canonicalisation the AWS SDK for Go v2, botocore (the AWS CLI) and the
// AWS SDK for JavaScript v3 sign with:
//
//   - the canonical URI is the request's path as sent (still
//     percent-encoded), percent-encoded once more, as every SDK does for
//     services other than S3; the JavaScript SDK's form, which also drops
//     empty and dot segments, is accepted too;
//   - the canonical query is every parameter, decoded and re-encoded per
//     RFC 3986, sorted by key and then value;
//   - signed headers are lowercased, sorted, their values trimmed with
//     runs of spaces collapsed and repeated headers joined with commas;
//   - the payload hash is the SHA-256 of the body, or the
//     X-Amz-Content-Sha256 header when sent (UNSIGNED-PAYLOAD is
//     accepted; any other value must be the body's hash).
//
// Any region in the credential scope is accepted (clients keep their own
// AWS_REGION; the region esmd writes into ARNs is a different setting); the
// service must be "lambda". Both the Authorization header and presigned
// query parameters (X-Amz-Signature, ...) are accepted.
type Verifier struct {
	creds Credentials
	now   func() time.Time
}

// NewVerifier returns a verifier for creds. now is the clock (nil:
// time.Now).
func NewVerifier(creds Credentials, now func() time.Time) *Verifier {
	if now == nil {
		now = time.Now
	}
	return &Verifier{creds: creds, now: now}
}

// sigRequest is what the verifier read from a request before its body.
type sigRequest struct {
	cred          Credential
	amzDate       string // as sent
	scope         string // date/region/service/aws4_request
	signedHeaders []string
	signature     string
	presigned     bool
}

// authErr is a front-end refusal: every one is a 403, as AWS answers.
func authErr(typ, format string, args ...any) *esm.Error {
	return &esm.Error{Type: typ, Status: http.StatusForbidden, Message: fmt.Sprintf(format, args...)}
}

// parse checks everything about the signature that does not need the
// body: a request without a signature is MissingAuthenticationToken, one
// with an unknown key UnrecognizedClient, one out of the clock window or
// scoped to another service InvalidSignature.
func (v *Verifier) parse(r *http.Request) (*sigRequest, error) {
	q := r.URL.Query()
	var s sigRequest
	var credential, signedHeaders string
	if auth := r.Header.Get("Authorization"); auth != "" {
		var missing []string
		algo, rest, _ := strings.Cut(auth, " ")
		params := map[string]string{}
		if algo == sigAlgorithm {
			for _, part := range strings.Split(rest, ",") {
				part = strings.TrimSpace(part)
				if part == "" {
					continue
				}
				k, val, ok := strings.Cut(part, "=")
				if !ok {
					return nil, authErr(ErrTypeIncompleteSignature,
						"'%s' not a valid key=value pair (missing equal-sign) in Authorization header: '%s'.", part, auth)
				}
				params[k] = val
			}
		}
		credential, signedHeaders, s.signature = params["Credential"], params["SignedHeaders"], params["Signature"]
		if credential == "" {
			missing = append(missing, "Authorization header requires 'Credential' parameter.")
		}
		if s.signature == "" {
			missing = append(missing, "Authorization header requires 'Signature' parameter.")
		}
		if signedHeaders == "" {
			missing = append(missing, "Authorization header requires 'SignedHeaders' parameter.")
		}
		s.amzDate = r.Header.Get("X-Amz-Date")
		if s.amzDate == "" {
			if d := r.Header.Get("Date"); d != "" {
				t, err := http.ParseTime(d)
				if err != nil {
					return nil, authErr(ErrTypeIncompleteSignature, "Date must be in ISO-8601 'basic format'. Got '%s'. See http://en.wikipedia.org/wiki/ISO_8601", d)
				}
				s.amzDate = t.UTC().Format(amzDateFormat)
			} else {
				missing = append(missing, "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
			}
		}
		if len(missing) > 0 {
			return nil, authErr(ErrTypeIncompleteSignature, "%s Authorization=%s", strings.Join(missing, " "), auth)
		}
	} else if q.Has("X-Amz-Signature") || q.Has("X-Amz-Algorithm") || q.Has("X-Amz-Credential") {
		s.presigned = true
		var missing []string
		for _, k := range []string{"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature", "X-Amz-SignedHeaders", "X-Amz-Date"} {
			if q.Get(k) == "" {
				missing = append(missing, fmt.Sprintf("AWS query-string parameters must include '%s'.", k))
			}
		}
		if len(missing) > 0 {
			return nil, authErr(ErrTypeIncompleteSignature, "%s Re-examine the query-string parameters.", strings.Join(missing, " "))
		}
		if a := q.Get("X-Amz-Algorithm"); a != sigAlgorithm {
			return nil, authErr(ErrTypeIncompleteSignature, "Unsupported AWS 'algorithm': '%s'", a)
		}
		credential, signedHeaders, s.signature, s.amzDate = q.Get("X-Amz-Credential"), q.Get("X-Amz-SignedHeaders"), q.Get("X-Amz-Signature"), q.Get("X-Amz-Date")
	} else {
		return nil, authErr(ErrTypeMissingToken, "Missing Authentication Token")
	}

	parts := strings.Split(credential, "/")
	if len(parts) != 5 {
		return nil, authErr(ErrTypeIncompleteSignature,
			"Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '%s'", credential)
	}
	cred, ok := v.creds[parts[0]]
	if !ok {
		return nil, authErr(ErrTypeUnrecognizedClient, "The security token included in the request is invalid.")
	}
	if cred.SessionToken != "" {
		tok := r.Header.Get("X-Amz-Security-Token")
		if s.presigned && tok == "" {
			tok = q.Get("X-Amz-Security-Token")
		}
		if !hmac.Equal([]byte(tok), []byte(cred.SessionToken)) {
			return nil, authErr(ErrTypeUnrecognizedClient, "The security token included in the request is invalid.")
		}
	}
	s.cred = cred
	t, err := time.Parse(amzDateFormat, s.amzDate)
	if err != nil {
		return nil, authErr(ErrTypeIncompleteSignature, "Date must be in ISO-8601 'basic format'. Got '%s'. See http://en.wikipedia.org/wiki/ISO_8601", s.amzDate)
	}
	switch {
	case parts[1] != s.amzDate[:8]:
		return nil, authErr(ErrTypeInvalidSignature,
			"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '%s' != '%s', from '%s'.", parts[1], s.amzDate[:8], s.amzDate)
	case parts[2] == "":
		return nil, authErr(ErrTypeInvalidSignature, "Credential should be scoped to a valid region. ")
	case parts[3] != SigningService:
		return nil, authErr(ErrTypeInvalidSignature, "Credential should be scoped to correct service: '%s'. ", SigningService)
	case parts[4] != "aws4_request":
		return nil, authErr(ErrTypeInvalidSignature, "Credential should be scoped with a valid terminator: 'aws4_request', not '%s'. ", parts[4])
	}
	s.scope = strings.Join(parts[1:], "/")

	now := v.now().UTC()
	stamp := func(t time.Time) string { return t.UTC().Format(amzDateFormat) }
	if s.presigned {
		exp, err := strconv.Atoi(q.Get("X-Amz-Expires"))
		if err != nil || exp < 1 || exp > maxPresignSecs {
			return nil, authErr(ErrTypeIncompleteSignature,
				"X-Amz-Expires must be an integer between 1 and %d seconds, got '%s'", maxPresignSecs, q.Get("X-Amz-Expires"))
		}
		if end := t.Add(time.Duration(exp) * time.Second); now.After(end) {
			return nil, authErr(ErrTypeInvalidSignature, "Signature expired: %s is now earlier than %s (%s - %d sec.)",
				s.amzDate, stamp(now.Add(-time.Duration(exp)*time.Second)), stamp(now), exp)
		}
	} else if t.Before(now.Add(-MaxClockSkew)) {
		return nil, authErr(ErrTypeInvalidSignature, "Signature expired: %s is now earlier than %s (%s - 5 min.)",
			s.amzDate, stamp(now.Add(-MaxClockSkew)), stamp(now))
	}
	if t.After(now.Add(MaxClockSkew)) {
		return nil, authErr(ErrTypeInvalidSignature, "Signature not yet current: %s is still later than %s (%s + 5 min.)",
			s.amzDate, stamp(now.Add(MaxClockSkew)), stamp(now))
	}

	s.signedHeaders = strings.Split(signedHeaders, ";")
	hasHost := false
	for _, h := range s.signedHeaders {
		hasHost = hasHost || h == "host"
	}
	if !hasHost {
		return nil, authErr(ErrTypeInvalidSignature, "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
	}
	return &s, nil
}

// verify checks the signature of r over its body.
func (v *Verifier) verify(r *http.Request, s *sigRequest, body []byte) error {
	sum := sha256.Sum256(body)
	payload := hex.EncodeToString(sum[:])
	if h := r.Header.Get("X-Amz-Content-Sha256"); h != "" {
		switch {
		case h == unsignedPayload:
			payload = h
		case !hmac.Equal([]byte(strings.ToLower(h)), []byte(payload)):
			return authErr(ErrTypeInvalidSignature, "The provided 'x-amz-content-sha256' header does not match what was computed.")
		default:
			payload = h
		}
	}
	headers := canonicalHeaders(r, s.signedHeaders)
	query := canonicalQuery(r.URL.RawQuery, s.presigned)
	key := signingKey(s.cred.SecretAccessKey, s.scope)
	var first, firstSTS string
	for i, uri := range canonicalURIs(r) {
		creq := strings.Join([]string{r.Method, uri, query, headers, strings.Join(s.signedHeaders, ";"), payload}, "\n")
		sts := stringToSign(s.amzDate, s.scope, creq)
		sig := hex.EncodeToString(hmacSHA256(key, sts))
		if hmac.Equal([]byte(sig), []byte(s.signature)) {
			return nil
		}
		if i == 0 {
			first, firstSTS = creq, sts
		}
	}
	return authErr(ErrTypeInvalidSignature, "The request signature we calculated does not match the signature you provided. "+
		"Check your AWS Secret Access Key and signing method. Consult the service documentation for details.\n\n"+
		"The Canonical String for this request should have been\n'%s'\n\nThe String-to-Sign should have been\n'%s'\n", first, firstSTS)
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

func signingKey(secret, scope string) []byte {
	k := []byte("AWS4" + secret)
	for _, p := range strings.Split(scope, "/") {
		k = hmacSHA256(k, p)
	}
	return k
}

func stringToSign(amzDate, scope, canonical string) string {
	sum := sha256.Sum256([]byte(canonical))
	return sigAlgorithm + "\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(sum[:])
}

// rawPath is the request target's path as the client sent it.
func rawPath(r *http.Request) string {
	p := r.RequestURI
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	if !strings.HasPrefix(p, "/") {
		// absolute-form (http://host/path), or a request built in a test
		// without a RequestURI: the parsed URL keeps the encoding sent.
		p = r.URL.EscapedPath()
	}
	if p == "" {
		p = "/"
	}
	return p
}

// canonicalURIs returns the canonical URI every SDK but the JavaScript one
// signs, then the JavaScript SDK's (empty and dot segments removed) when it
// differs.
func canonicalURIs(r *http.Request) []string {
	p := rawPath(r)
	out := []string{escapeRFC3986(p, true)}
	segs := []string{}
	for _, seg := range strings.Split(p, "/") {
		switch seg {
		case "", ".":
		case "..":
			if len(segs) > 0 {
				segs = segs[:len(segs)-1]
			}
		default:
			segs = append(segs, seg)
		}
	}
	norm := "/" + strings.Join(segs, "/")
	if len(segs) > 0 && strings.HasSuffix(p, "/") {
		norm += "/"
	}
	if n := escapeRFC3986(norm, true); n != out[0] {
		out = append(out, n)
	}
	return out
}

// canonicalQuery decodes every parameter of raw and re-encodes it per RFC
// 3986, sorted by encoded key and then value. X-Amz-Signature is left out
// of a presigned request's query.
func canonicalQuery(raw string, presigned bool) string {
	if raw == "" {
		return ""
	}
	var pairs []string
	for _, part := range strings.Split(raw, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		if dk, err := url.QueryUnescape(k); err == nil {
			k = dk
		}
		if dv, err := url.QueryUnescape(v); err == nil {
			v = dv
		}
		if presigned && k == "X-Amz-Signature" {
			continue
		}
		pairs = append(pairs, escapeRFC3986(k, false)+"="+escapeRFC3986(v, false))
	}
	sort.Slice(pairs, func(i, j int) bool {
		ki, vi, _ := strings.Cut(pairs[i], "=")
		kj, vj, _ := strings.Cut(pairs[j], "=")
		if ki != kj {
			return ki < kj
		}
		return vi < vj
	})
	return strings.Join(pairs, "&")
}

// canonicalHeaders renders the signed headers: "name:value\n" each, values
// trimmed, runs of spaces collapsed, repeated headers joined with commas.
func canonicalHeaders(r *http.Request, names []string) string {
	var b strings.Builder
	for _, name := range names {
		var vals []string
		switch name {
		case "host":
			vals = []string{r.Host}
		case "content-length":
			if cl := r.Header.Values("Content-Length"); len(cl) > 0 {
				vals = cl
			} else if r.ContentLength >= 0 {
				vals = []string{strconv.FormatInt(r.ContentLength, 10)}
			}
		default:
			vals = r.Header.Values(name)
		}
		b.WriteString(name)
		b.WriteByte(':')
		for i, v := range vals {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strings.Join(strings.Fields(v), " "))
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// escapeRFC3986 percent-encodes every byte but the unreserved characters
// (and '/' when slash is true), with upper-case hex, as SigV4 requires.
func escapeRFC3986(s string, slash bool) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
			c == '-' || c == '_' || c == '.' || c == '~' || slash && c == '/' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}
