package bench

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// maxEvent bounds the body of one invocation the endpoint reads: Lambda's
// synchronous payload limit is 6 MB.
const maxEvent = 16 << 20

// b64Marker is how the start of a record, `{"bk":"BENCH`, reads in base64
// when the record starts a base64 field (the value of a Kafka record, the
// data of a Kinesis, RabbitMQ or ActiveMQ record): 12 bytes encode to the
// same 16 characters wherever the field starts.
var b64Marker = []byte(base64.StdEncoding.EncodeToString([]byte(`{"bk":"BENCH`)))

// b64Prefix is how many base64 characters of a record the endpoint
// decodes: enough for the token (ids up to 20 digits, nanosecond times).
const b64Prefix = 96

// scanTokens appends the tokens of the records in an event: where the
// event carries record bodies as text (SQS, DynamoDB Streams, DocumentDB),
// the token is in the event as is; where it carries them in base64, the
// endpoint decodes the first b64Prefix characters after b64Marker.
func scanTokens(dst []token, ev []byte) []token {
	for b := ev; ; {
		i := bytes.Index(b, []byte(tokenPrefix))
		if i < 0 {
			break
		}
		b = b[i+len(tokenPrefix):]
		if t, ok := parseToken(b[:min(len(b), 48)]); ok {
			dst = append(dst, t)
		}
	}
	var buf [b64Prefix / 4 * 3]byte
	for b := ev; ; {
		i := bytes.Index(b, b64Marker)
		if i < 0 {
			break
		}
		b = b[i:]
		end := min(len(b), b64Prefix)
		if q := bytes.IndexByte(b[:end], '"'); q >= 0 {
			end = q
		}
		end -= end % 4
		n, err := base64.StdEncoding.Decode(buf[:], b[:end])
		if err == nil || n > 0 {
			if rest, ok := bytes.CutPrefix(buf[:n], []byte(`{"bk":"`+tokenPrefix)); ok {
				if t, ok := parseToken(rest); ok {
					dst = append(dst, t)
				}
			}
		}
		b = b[len(b64Marker):]
	}
	return dst
}

// Endpoint is the bench's Lambda Invoke API on 127.0.0.1: it reads each
// event's record tokens into the current round's Collector and answers as
// a function that returned null, after Delay. With Forward set it passes
// each request on to that Lambda endpoint (a real function) and relays the
// answer instead.
type Endpoint struct {
	// Delay is how long the function "runs" (--function-delay).
	Delay time.Duration
	// Forward is the base URL of a real Lambda Invoke API (--lambda-endpoint).
	Forward string

	coll    atomic.Pointer[Collector]
	errors  atomic.Int64
	lastErr atomic.Pointer[string]
	// inflight counts invocations not yet answered.
	inflight atomic.Int64
	client   *http.Client
	srv      *http.Server
	url      string
}

// Start listens on 127.0.0.1 and serves until Close.
func (e *Endpoint) Start() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	e.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024}}
	e.srv = &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	e.url = "http://" + ln.Addr().String()
	go func() { _ = e.srv.Serve(ln) }()
	return nil
}

// URL is the endpoint's base URL, for --lambda-endpoint.
func (e *Endpoint) URL() string { return e.url }

// Close stops serving.
func (e *Endpoint) Close() {
	if e.srv != nil {
		e.srv.Close()
	}
}

// Quiesce waits until no invocation is in flight, or for at most max.
func (e *Endpoint) Quiesce(max time.Duration) {
	for deadline := time.Now().Add(max); e.inflight.Load() > 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
}

// Use makes c the collector of the invocations that follow.
func (e *Endpoint) Use(c *Collector) { e.coll.Store(c) }

// Errors is how many requests the endpoint failed (bad requests, errors of
// the function forwarded to), and what the last one was.
func (e *Endpoint) Errors() (int64, string) {
	last := ""
	if p := e.lastErr.Load(); p != nil {
		last = *p
	}
	return e.errors.Load(), last
}

// failed counts a failed request.
func (e *Endpoint) failed(what string) {
	e.errors.Add(1)
	e.lastErr.Store(&what)
}

func (e *Endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	e.inflight.Add(1)
	defer e.inflight.Add(-1)
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/invocations") {
		e.failed(r.Method + " " + r.URL.Path + ": not an Invoke request")
		http.Error(w, `{"Type":"User","message":"not an Invoke request"}`, http.StatusNotFound)
		return
	}
	// The bench process shares the machine with the child it measures:
	// events are read into reused buffers, so that its garbage collector
	// runs seldom (megabytes a second of events otherwise).
	buf := endpointBufs.Get().(*endpointBuf)
	defer endpointBufs.Put(buf)
	body, err := readEvent(r, buf.body[:0])
	buf.body = body[:0]
	if err != nil || len(body) > maxEvent {
		e.failed("cannot read the event")
		http.Error(w, `{"Type":"User","message":"cannot read the event"}`, http.StatusRequestEntityTooLarge)
		return
	}
	c := e.coll.Load()
	if c != nil {
		buf.toks = scanTokens(buf.toks[:0], body)
		c.Observe(start, buf.toks)
	}
	if e.Forward != "" {
		e.forward(w, r, body)
	} else {
		if e.Delay > 0 {
			time.Sleep(e.Delay)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Amz-Executed-Version", "$LATEST")
		_, _ = io.WriteString(w, "null")
	}
	if c != nil {
		c.ObserveDuration(time.Since(start))
	}
}

// endpointBuf is what one request of the endpoint reads into.
type endpointBuf struct {
	body []byte
	toks []token
}

var endpointBufs = sync.Pool{New: func() any { return new(endpointBuf) }}

// readEvent appends r's body to dst, at most maxEvent+1 bytes: in one
// read into room for its Content-Length when it has one.
func readEvent(r *http.Request, dst []byte) ([]byte, error) {
	if n := r.ContentLength; n >= 0 && n <= maxEvent {
		dst = slices.Grow(dst, int(n)+1)
	}
	for {
		if len(dst) == cap(dst) {
			dst = slices.Grow(dst, 64<<10)
		}
		n, err := r.Body.Read(dst[len(dst):min(cap(dst), maxEvent+1)])
		dst = dst[:len(dst)+n]
		if err == io.EOF || len(dst) > maxEvent {
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
	}
}

// forward passes an invocation on to the real function and relays its
// answer.
func (e *Endpoint) forward(w http.ResponseWriter, r *http.Request, body []byte) {
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(e.Forward, "/")+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		e.fail(w, err)
		return
	}
	for k, v := range r.Header {
		req.Header[k] = v
	}
	resp, err := e.client.Do(req)
	if err != nil {
		if r.Context().Err() != nil {
			return // the caller went away: not the function's error
		}
		e.fail(w, err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 || resp.Header.Get("X-Amz-Function-Error") != "" {
		e.failed(fmt.Sprintf("the function answered %d %s", resp.StatusCode, resp.Header.Get("X-Amz-Function-Error")))
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, io.LimitReader(resp.Body, maxEvent))
}

func (e *Endpoint) fail(w http.ResponseWriter, err error) {
	e.failed(err.Error())
	var ne net.Error
	status := http.StatusBadGateway
	if errors.As(err, &ne) && ne.Timeout() {
		status = http.StatusGatewayTimeout
	}
	http.Error(w, fmt.Sprintf(`{"Type":"Service","message":%q}`, err.Error()), status)
}
