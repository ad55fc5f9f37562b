package api

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strings"

	"github.com/esmd/esmd/esm"
	"github.com/google/uuid"
)

// ErrTypeAccessDenied is the exception of a request refused for its Host or
// Origin. Lambda has no such check; AccessDeniedException is the name AWS
// services use for a 403 that is not about the signature.
const ErrTypeAccessDenied = "AccessDeniedException"

// DefaultMaxBodies is how many request bodies Protect reads at once by
// default.
const DefaultMaxBodies = 32

// Policy says which requests reach the API. The zero Policy accepts
// unsigned requests from loopback names and IP literals, no browser
// origin, and JSON bodies only.
type Policy struct {
	// Verifier checks each request's SigV4 signature; nil accepts
	// unsigned requests.
	Verifier *Verifier
	// BindHost is the host of the listen address; when it is a name, it
	// is an accepted Host.
	BindHost string
	// AllowedHosts are further names accepted in the Host header (without
	// port; "*" accepts any). IP literals and "localhost" are always
	// accepted: a DNS-rebinding page can only reach esmd under a name.
	AllowedHosts []string
	// AllowedOrigins are the browser origins (scheme://host[:port]; "*"
	// any) whose requests are accepted and answered with CORS headers.
	// Requests without an Origin are not browser cross-origin requests and
	// are accepted.
	AllowedOrigins []string
	// MaxBodies bounds the request bodies read at the same time (default
	// DefaultMaxBodies), so slow senders cannot make esmd buffer more than
	// MaxBodies*MaxBodyBytes.
	MaxBodies int
}

// Protect returns next behind the policy's checks, in this order:
//
//  1. Host: a name that is neither loopback, the bind host nor allowed is
//     refused (403 AccessDeniedException): DNS rebinding.
//  2. Origin: an origin not allowed is refused (403 AccessDeniedException),
//     and so is a browser request that says it is cross-site
//     (Sec-Fetch-Site) without an Origin; CORS preflights from allowed
//     origins are answered here.
//  3. Signature (when p.Verifier is set): the errors AWS Lambda returns.
//  4. Content-Type: a POST or PUT with a body must be application/json
//     (parameters such as charset allowed): 415 UnsupportedMediaTypeException.
//     This alone stops the "simple" cross-site POSTs (text/plain, forms)
//     browsers send without a preflight.
//  5. The body is read, at most MaxBodyBytes, and the signature checked
//     over it. At most p.MaxBodies requests with a body are read and
//     handled at a time; the others wait, and requests without a body
//     (Get, List, Delete, ListTags, UntagResource) never wait.
func Protect(next http.Handler, p Policy) http.Handler {
	g := &guard{next: next, p: p, hosts: map[string]bool{"localhost": true}, origins: map[string]bool{}}
	if h := normHost(p.BindHost); h != "" {
		g.hosts[h] = true
	}
	for _, h := range p.AllowedHosts {
		if h == "*" {
			g.anyHost = true
		}
		g.hosts[normHost(h)] = true
	}
	for _, o := range p.AllowedOrigins {
		if o == "*" {
			g.anyOrigin = true
		}
		g.origins[strings.TrimSuffix(strings.ToLower(o), "/")] = true
	}
	n := p.MaxBodies
	if n <= 0 {
		n = DefaultMaxBodies
	}
	g.slots = make(chan struct{}, n)
	g.free = make(chan []byte, n)
	return g
}

type guard struct {
	next      http.Handler
	p         Policy
	hosts     map[string]bool
	anyHost   bool
	origins   map[string]bool
	anyOrigin bool
	slots     chan struct{}
	free      chan []byte
}

func normHost(h string) string {
	return strings.TrimSuffix(strings.ToLower(strings.Trim(h, "[]")), ".")
}

// hostAllowed reports whether the Host header names esmd: an IP literal,
// localhost, the bind host or an allowed name.
func (g *guard) hostAllowed(hostport string) bool {
	if g.anyHost {
		return true
	}
	h := hostport
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		h = host
	}
	h = normHost(h)
	if h == "" {
		return false
	}
	if net.ParseIP(h) != nil {
		return true
	}
	return g.hosts[h]
}

func accessDenied(format string, args ...any) *esm.Error {
	return &esm.Error{Type: ErrTypeAccessDenied, Status: http.StatusForbidden, Message: fmt.Sprintf(format, args...)}
}

func (g *guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("x-amzn-RequestId", uuid.NewString())
	if !g.hostAllowed(r.Host) {
		writeError(w, accessDenied("Host '%s' is not allowed: esmd answers requests addressed to its bind address, loopback names, IP addresses and --allowed-hosts", truncate(r.Host, 256)))
		return
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		if !g.anyOrigin && !g.origins[strings.ToLower(origin)] {
			writeError(w, accessDenied("Origin '%s' is not allowed: esmd answers browser requests only from --allowed-origins", truncate(origin, 256)))
			return
		}
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", origin)
		h.Add("Vary", "Origin")
		h.Set("Access-Control-Expose-Headers", "x-amzn-RequestId, X-Amzn-ErrorType")
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE")
			if req := r.Header.Get("Access-Control-Request-Headers"); req != "" && len(req) <= 4096 {
				h.Set("Access-Control-Allow-Headers", req)
			}
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusOK)
			return
		}
	} else if site := r.Header.Get("Sec-Fetch-Site"); site == "cross-site" || site == "same-site" {
		writeError(w, accessDenied("cross-site browser requests are not allowed (Sec-Fetch-Site: %s without an Origin)", truncate(site, 64)))
		return
	}
	var sig *sigRequest
	if g.p.Verifier != nil {
		var err error
		if sig, err = g.p.Verifier.parse(r); err != nil {
			writeError(w, err)
			return
		}
	}
	if (r.Method == http.MethodPost || r.Method == http.MethodPut) && r.ContentLength != 0 {
		ct := r.Header.Get("Content-Type")
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			writeError(w, &esm.Error{Type: esm.ErrTypeUnsupportedMediaType, Status: http.StatusUnsupportedMediaType,
				Message: fmt.Sprintf("The content type of the request body is not JSON: '%s'", truncate(ct, 256))})
			return
		}
	}
	if r.ContentLength > MaxBodyBytes {
		writeError(w, tooLarge())
		return
	}
	if !g.acquire(r) {
		return // the client went away
	}
	var buf []byte
	if hasBody(r) {
		buf = g.buffer()
		defer g.release(buf)
	}
	body, err := readBody(r, buf)
	if err != nil {
		writeError(w, err)
		return
	}
	if sig != nil {
		if err := g.p.Verifier.verify(r, sig, body); err != nil {
			writeError(w, err)
			return
		}
	}
	// The handler copies what it keeps (encoding/json does), so buf can
	// serve the next request once it returns.
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	g.next.ServeHTTP(w, r)
}

// acquire takes a body slot for a request with a body, waiting while
// p.MaxBodies requests hold theirs; it reports false when the client went
// away first.
func (g *guard) acquire(r *http.Request) bool {
	if !hasBody(r) {
		return true
	}
	select {
	case g.slots <- struct{}{}:
		return true
	case <-r.Context().Done():
		return false
	}
}

// buffer returns a MaxBodyBytes buffer for a request with a body: one
// released by an earlier request, else a new one. At most p.MaxBodies are
// in use, so buffers never amount to more than MaxBodies*MaxBodyBytes and
// slow or abandoned bodies leave no garbage behind.
func (g *guard) buffer() []byte {
	select {
	case b := <-g.free:
		return b
	default:
		return make([]byte, MaxBodyBytes)
	}
}

func (g *guard) release(buf []byte) {
	if buf == nil {
		return
	}
	g.free <- buf // never blocks: one place for each slot
	<-g.slots
}

func hasBody(r *http.Request) bool {
	return r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody
}

// readBody reads the whole body into buf; a body longer than buf (that
// is, MaxBodyBytes) is RequestTooLargeException.
func readBody(r *http.Request, buf []byte) ([]byte, error) {
	if !hasBody(r) {
		return nil, nil
	}
	if r.ContentLength > int64(len(buf)) {
		return nil, tooLarge()
	}
	if r.ContentLength > 0 {
		if _, err := io.ReadFull(r.Body, buf[:r.ContentLength]); err != nil {
			return nil, esm.InvalidRequestContent("reading the request body: " + err.Error())
		}
		return buf[:r.ContentLength], nil
	}
	n, err := io.ReadFull(r.Body, buf)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return buf[:n], nil
	case err != nil:
		return nil, esm.InvalidRequestContent("reading the request body: " + err.Error())
	}
	var one [1]byte
	if m, _ := io.ReadFull(r.Body, one[:]); m > 0 {
		return nil, tooLarge()
	}
	return buf, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
