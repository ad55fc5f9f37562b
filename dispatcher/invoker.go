package dispatcher

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"
)

// Invoker invokes a function synchronously with an encoded event. fn is the
// mapping's FunctionArn (or a function name); payload the event bytes.
//
// A nil error means the function ran (or the emulator answered for it):
// check Result.FunctionError. A non-nil error is an *InvokeError (the batch
// did not reach the function, or the answer was lost) or the context's error.
type Invoker interface {
	Invoke(ctx context.Context, fn string, payload []byte) (Result, error)
}

// Result is the answer of a synchronous invocation.
type Result struct {
	// StatusCode is the Invoke HTTP status, 200 for RequestResponse. A
	// function error reported by RIE as 502 is reported as 200, the status
	// Lambda gives a crashed function.
	StatusCode int
	// FunctionError is "Unhandled" or "Handled" when the function failed
	// (X-Amz-Function-Error; in ModeRIE also RIE's error answers), "" when
	// it returned normally. Both values count as a failed attempt.
	FunctionError string
	// ErrorType is the errorType of a function error's body when known
	// ("Sandbox.Timedout", "Function.ResponseSizeTooLarge", ...).
	ErrorType string
	// ExecutedVersion is X-Amz-Executed-Version ("$LATEST" or a number);
	// "$LATEST" when the endpoint does not send it (RIE).
	ExecutedVersion string
	// Payload is the function's response (or error) body.
	Payload []byte
}

// Failed reports whether the invocation was a function error.
func (r *Result) Failed() bool { return r.FunctionError != "" }

// Mode selects how LambdaInvoker talks to its endpoint.
type Mode uint8

const (
	// ModeAWS is the Lambda Invoke API (AWS, or an emulator that behaves
	// like it).
	ModeAWS Mode = iota
	// ModeRIE is the AWS Lambda Runtime Interface Emulator: function name
	// "function", one invocation at a time, errors without
	// X-Amz-Function-Error (INFRA.md section 6).
	ModeRIE
)

// ParseMode parses the --invoke-mode flag value: "aws" or "rie".
func ParseMode(s string) (Mode, error) {
	switch strings.ToLower(s) {
	case "", "aws":
		return ModeAWS, nil
	case "rie":
		return ModeRIE, nil
	}
	return 0, fmt.Errorf("invoke mode %q: want aws or rie", s)
}

func (m Mode) String() string {
	if m == ModeRIE {
		return "rie"
	}
	return "aws"
}

// MaxResponseSize is the largest synchronous response Lambda returns (6 MB).
// A larger answer is a function error of type Function.ResponseSizeTooLarge.
const MaxResponseSize = 6 << 20

type options struct {
	mode           Mode
	endpoint       string
	maxConcurrency int
	timeout        time.Duration
	httpClient     *http.Client
	maxResponse    int64
	unsigned       *bool
	direct         bool
	byName         bool
	clientOpts     []func(*lambda.Options)
}

// Option configures a LambdaInvoker.
type Option func(*options) error

// WithMode selects ModeAWS (default) or ModeRIE (esmd --invoke-mode).
func WithMode(m Mode) Option {
	return func(o *options) error { o.mode = m; return nil }
}

// WithFunctionNames makes Invoke name the function by its name alone
// (arn:...:function:NAME becomes NAME), not by its ARN: sam local
// start-lambda serves functions by name only (aws/aws-sam-cli#8289). AWS
// takes either for a function of the caller's account and region. Default
// false (esmd --invoke-by arn).
func WithFunctionNames(on bool) Option {
	return func(o *options) error { o.byName = on; return nil }
}

// WithEndpoint overrides the Invoke endpoint URL (esmd --lambda-endpoint).
// Without it the SDK configuration applies (AWS_ENDPOINT_URL_LAMBDA,
// AWS_ENDPOINT_URL, profiles).
func WithEndpoint(url string) Option {
	return func(o *options) error {
		if url == "" {
			return errors.New("dispatcher: empty endpoint")
		}
		o.endpoint = url
		return nil
	}
}

// WithMaxConcurrency bounds the concurrent invocations of each function
// (default 0: unbounded, Lambda throttles with 429 itself). ModeRIE always
// uses 1 per endpoint.
func WithMaxConcurrency(n int) Option {
	return func(o *options) error {
		if n < 0 {
			return fmt.Errorf("dispatcher: max concurrency %d < 0", n)
		}
		o.maxConcurrency = n
		return nil
	}
}

// WithTimeout bounds one Invoke call (default 16 minutes: the largest
// function timeout, 900 s, plus a margin). When it fires the call fails with
// an *InvokeError of Type "ClientTimeout" (ClassRetry; the function may have
// run).
func WithTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("dispatcher: timeout %v <= 0", d)
		}
		o.timeout = d
		return nil
	}
}

// WithHTTPClient sets the HTTP client the SDK uses (its Transport is
// wrapped to bound response sizes).
func WithHTTPClient(c *http.Client) Option {
	return func(o *options) error { o.httpClient = c; return nil }
}

// WithMaxResponseSize changes the response size limit (default
// MaxResponseSize).
func WithMaxResponseSize(n int64) Option {
	return func(o *options) error { o.maxResponse = n; return nil }
}

// WithUnsignedPayload signs requests with the payload hash
// UNSIGNED-PAYLOAD instead of the SHA-256 of the event. Hashing costs about
// 1 us per KB of event (the largest part of the dispatcher's overhead), but
// AWS Lambda requires it: use this only with endpoints that do not check
// signatures (emulators). Default: on in ModeRIE, off in ModeAWS.
func WithUnsignedPayload(on bool) Option {
	return func(o *options) error { o.unsigned = &on; return nil }
}

// WithDirectHTTP sends Invoke requests with net/http and the SDK's SigV4
// signer and credentials instead of the SDK Lambda client's middleware stack
// (endpoint, region and credentials still come from the SDK client). It
// answers exactly as the SDK path does and removes most of the per-call
// overhead (see BenchmarkDispatch).
func WithDirectHTTP(on bool) Option {
	return func(o *options) error { o.direct = on; return nil }
}

// WithClientOptions passes extra options to the SDK Lambda client.
func WithClientOptions(fns ...func(*lambda.Options)) Option {
	return func(o *options) error { o.clientOpts = append(o.clientOpts, fns...); return nil }
}

// LambdaInvoker implements Invoker with the AWS SDK Lambda client.
type LambdaInvoker struct {
	client *lambda.Client
	direct *direct // WithDirectHTTP
	rieSem chan struct{}
	opts   options

	mu   sync.Mutex
	sems map[string]chan struct{}
}

// NewLambdaInvoker returns an invoker using cfg's region, credentials and
// endpoint resolution. The SDK's retryer is disabled: every throttle and
// 5xx comes back to the caller classified.
func NewLambdaInvoker(cfg aws.Config, opts ...Option) (*LambdaInvoker, error) {
	o := options{timeout: 16 * time.Minute, maxResponse: MaxResponseSize}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if o.mode == ModeRIE {
		o.maxConcurrency = 1
	}
	unsigned := o.mode == ModeRIE
	if o.unsigned != nil {
		unsigned = *o.unsigned
	}
	hc := o.httpClient
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		// Many lanes invoke one endpoint at once: keep their connections
		// (the default keeps 2 idle connections per host and redials the
		// rest).
		tr.MaxIdleConns = 0
		tr.MaxIdleConnsPerHost = 1024
		hc = &http.Client{Transport: tr}
	}
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	limited := *hc
	limited.Transport = &limitTransport{base: base, max: o.maxResponse}

	client := lambda.NewFromConfig(cfg, func(lo *lambda.Options) {
		lo.Retryer = aws.NopRetryer{}
		lo.HTTPClient = &limited
		if o.endpoint != "" {
			lo.BaseEndpoint = aws.String(o.endpoint)
		}
		if lo.Region == "" && (o.mode == ModeRIE || o.endpoint != "") {
			// Emulators accept any region; real AWS needs the configured one.
			lo.Region = "us-east-1"
		}
		if lo.Credentials == nil && o.mode == ModeRIE {
			lo.Credentials = aws.AnonymousCredentials{}
		}
		if unsigned {
			lo.APIOptions = append(lo.APIOptions, v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)
		}
		for _, fn := range o.clientOpts {
			fn(lo)
		}
	})
	inv := &LambdaInvoker{client: client, opts: o, sems: make(map[string]chan struct{})}
	if o.mode == ModeRIE {
		ep, err := resolveEndpoint(context.Background(), client)
		if err != nil {
			return nil, err
		}
		inv.rieSem = rieSemaphore(ep)
	}
	if o.direct {
		d, err := newDirect(context.Background(), client, &limited, unsigned, o.maxResponse)
		if err != nil {
			return nil, err
		}
		inv.direct = d
	}
	return inv, nil
}

// ReleasesPayload reports whether Invoke reads its payload only until it
// returns, so that the caller may reuse the payload's memory: true on the
// direct HTTP path (WithDirectHTTP), which waits for the transport to close
// the request body. The SDK path makes no such promise.
func (l *LambdaInvoker) ReleasesPayload() bool { return l.direct != nil }

// Mode returns the invoker's mode.
func (l *LambdaInvoker) Mode() Mode { return l.opts.mode }

// rieSems holds one semaphore per RIE endpoint for the whole process, so
// that two invokers (two mappings) pointed at the same RIE still never
// overlap: a second concurrent invocation crashes RIE.
var (
	rieMu   sync.Mutex
	rieSems = map[string]chan struct{}{}
)

func rieSemaphore(endpoint string) chan struct{} {
	rieMu.Lock()
	defer rieMu.Unlock()
	s, ok := rieSems[endpoint]
	if !ok {
		s = make(chan struct{}, 1)
		rieSems[endpoint] = s
	}
	return s
}

func (l *LambdaInvoker) sem(key string) chan struct{} {
	if l.rieSem != nil {
		return l.rieSem
	}
	if l.opts.maxConcurrency == 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	s, ok := l.sems[key]
	if !ok {
		s = make(chan struct{}, l.opts.maxConcurrency)
		l.sems[key] = s
	}
	return s
}

// Invoke calls fn synchronously (RequestResponse) with payload. fn may be a
// FunctionArn, qualified or not, or a function name; the qualifier of a
// qualified ARN is sent as Qualifier. In ModeRIE fn is ignored and the bare
// name "function" is used.
func (l *LambdaInvoker) Invoke(ctx context.Context, fn string, payload []byte) (Result, error) {
	name, qualifier := SplitFunction(fn)
	if l.opts.byName {
		name = bareName(name)
	}
	if l.opts.mode == ModeRIE {
		name, qualifier = "function", ""
	}
	if s := l.sem(name); s != nil {
		select {
		case s <- struct{}{}:
			defer func() { <-s }()
		case <-ctx.Done():
			return Result{}, ctx.Err()
		}
	}
	callCtx, cancel := context.WithTimeoutCause(ctx, l.opts.timeout, errClientTimeout)
	defer cancel()
	if l.direct != nil {
		resp, body, err := l.direct.invoke(callCtx, name, qualifier, payload)
		if err != nil {
			return l.handleError(ctx, callCtx, err)
		}
		return l.directResult(resp, body)
	}
	in := &lambda.InvokeInput{
		FunctionName:   aws.String(name),
		InvocationType: types.InvocationTypeRequestResponse,
		Payload:        payload,
	}
	if qualifier != "" {
		in.Qualifier = aws.String(qualifier)
	}
	out, err := l.client.Invoke(callCtx, in)
	if err != nil {
		return l.handleError(ctx, callCtx, err)
	}
	res := Result{
		StatusCode:      int(out.StatusCode),
		FunctionError:   aws.ToString(out.FunctionError),
		ExecutedVersion: aws.ToString(out.ExecutedVersion),
		Payload:         out.Payload,
	}
	if res.StatusCode == 0 {
		res.StatusCode = http.StatusOK
	}
	if res.ExecutedVersion == "" {
		res.ExecutedVersion = "$LATEST"
	}
	if res.FunctionError != "" {
		res.ErrorType = errorType(res.Payload)
	} else if l.opts.mode == ModeRIE {
		rieFunctionError(&res)
	}
	return res, nil
}

var errClientTimeout = errors.New("invoke client timeout")

var errResponseTooLarge = errors.New("invoke response larger than the limit")

func (l *LambdaInvoker) handleError(parent, callCtx context.Context, err error) (Result, error) {
	if perr := parent.Err(); perr != nil {
		return Result{}, perr
	}
	if errors.Is(err, errResponseTooLarge) {
		return Result{
			StatusCode: http.StatusOK, FunctionError: "Unhandled", ErrorType: "Function.ResponseSizeTooLarge",
			ExecutedVersion: "$LATEST",
			Payload: []byte(fmt.Sprintf(`{"errorMessage":"Response payload size exceeded maximum allowed payload size (%d bytes).","errorType":"Function.ResponseSizeTooLarge"}`,
				l.opts.maxResponse)),
		}, nil
	}
	if context.Cause(callCtx) == errClientTimeout {
		return Result{}, &InvokeError{Type: "ClientTimeout", Message: fmt.Sprintf("no answer within %v", l.opts.timeout),
			Class: ClassRetry, Err: err}
	}
	ie := &InvokeError{Err: err}
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.Response != nil {
		ie.StatusCode = re.HTTPStatusCode()
		if ie.StatusCode == http.StatusTooManyRequests {
			ie.RetryAfter = parseRetryAfter(re.Response.Header.Get("Retry-After"), time.Now())
		}
		if et := re.Response.Header.Get("Error-Type"); et != "" {
			ie.Type = et
		}
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		if code := ae.ErrorCode(); code != "" && code != "UnknownError" {
			ie.Type = code
		}
		if msg := ae.ErrorMessage(); msg != "UnknownError" {
			ie.Message = msg
		}
	}
	if l.opts.mode == ModeRIE && ie.StatusCode == http.StatusBadGateway {
		// RIE: the runtime crashed (panic, exit). Lambda reports this as a
		// function error with status 200.
		return Result{StatusCode: http.StatusOK, FunctionError: "Unhandled", ErrorType: "Runtime.ExitError",
			ExecutedVersion: "$LATEST", Payload: []byte(ie.Message)}, nil
	}
	ie.Class = Classify(ie.Type, ie.Message, ie.StatusCode)
	return Result{}, ie
}

// rieFunctionError marks RIE's error answers, which come with status 200 and
// no X-Amz-Function-Error: a JSON object with errorMessage and errorType,
// or the plain text "Task timed out after N seconds".
func rieFunctionError(res *Result) {
	body := bytes.TrimSpace(res.Payload)
	switch {
	case bytes.HasPrefix(body, []byte("Task timed out")):
		res.FunctionError = "Unhandled"
		res.ErrorType = "Sandbox.Timedout"
	case len(body) > 0 && body[0] == '{':
		m, err := field(body, "errorType")
		if err != nil || m == nil {
			return
		}
		if msg, _ := field(body, "errorMessage"); msg == nil {
			return
		}
		res.FunctionError = "Unhandled"
		res.ErrorType = errorType(body)
	}
}

// errorType returns the errorType of a function error body, if any.
func errorType(body []byte) string {
	raw, err := field(body, "errorType")
	if err != nil || raw == nil {
		return ""
	}
	var s string
	_ = json.Unmarshal(raw, &s)
	return s
}

// limitTransport fails reading a response body past max bytes.
type limitTransport struct {
	base http.RoundTripper
	max  int64
}

func (t *limitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil || t.max <= 0 {
		return resp, err
	}
	if resp.ContentLength > t.max {
		resp.Body.Close()
		return nil, errResponseTooLarge
	}
	resp.Body = &limitedBody{rc: resp.Body, left: t.max}
	return resp, nil
}

type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, errResponseTooLarge
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return 0, errResponseTooLarge
	}
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

// Close releases the invoker's idle connections.
func (l *LambdaInvoker) Close() {
	if c, ok := l.client.Options().HTTPClient.(*http.Client); ok {
		c.CloseIdleConnections()
	}
}

// InvokerFunc adapts a function to the Invoker interface (fakes in tests).
type InvokerFunc func(ctx context.Context, fn string, payload []byte) (Result, error)

// Invoke calls f.
func (f InvokerFunc) Invoke(ctx context.Context, fn string, payload []byte) (Result, error) {
	return f(ctx, fn, payload)
}
