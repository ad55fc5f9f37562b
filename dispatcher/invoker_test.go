package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/google/go-cmp/cmp"
)

const testARN = "arn:aws:lambda:us-east-1:123456789012:function:fn"

func testConfig() aws.Config {
	return aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("AKID", "secret", "")}
}

// faultServer is an Invoke endpoint whose answer each test chooses.
func faultServer(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// paths are the two Invoke implementations; every invoker test runs on both.
var paths = []struct {
	name string
	opt  Option
}{{"sdk", WithDirectHTTP(false)}, {"direct", WithDirectHTTP(true)}}

func eachPath(t *testing.T, f func(t *testing.T, opt Option)) {
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) { f(t, p.opt) })
	}
}

func newInvoker(t testing.TB, endpoint string, opts ...Option) *LambdaInvoker {
	t.Helper()
	inv, err := NewLambdaInvoker(testConfig(), append([]Option{WithEndpoint(endpoint)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(inv.Close)
	return inv
}

func lambdaError(w http.ResponseWriter, status int, typ, msg string, hdr ...string) {
	for i := 0; i+1 < len(hdr); i += 2 {
		w.Header().Set(hdr[i], hdr[i+1])
	}
	w.Header().Set("X-Amzn-ErrorType", typ)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"Type":"User","message":%q}`, msg)
}

func TestInvokeRequest(t *testing.T) { eachPath(t, testInvokeRequest) }

func testInvokeRequest(t *testing.T, path Option) {
	var got struct {
		path, qualifier, invType, ctype, auth string
		body                                  string
	}
	url := faultServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.path, got.qualifier = r.URL.EscapedPath(), r.URL.Query().Get("Qualifier")
		got.invType, got.ctype, got.auth = r.Header.Get("X-Amz-Invocation-Type"), r.Header.Get("Content-Type"), r.Header.Get("Authorization")
		got.body = string(b)
		w.Header().Set("X-Amz-Executed-Version", "7")
		w.Write([]byte(`{"ok":true}`))
	})
	inv := newInvoker(t, url, path)
	res, err := inv.Invoke(context.Background(), testARN+":PROD", []byte(`{"Records":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	want := Result{StatusCode: 200, ExecutedVersion: "7", Payload: []byte(`{"ok":true}`)}
	if diff := cmp.Diff(want, res); diff != "" {
		t.Errorf("result (-want +got)\n%s", diff)
	}
	if got.path != "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Afn/invocations" || got.qualifier != "PROD" {
		t.Errorf("path %s qualifier %q", got.path, got.qualifier)
	}
	if got.invType != "RequestResponse" || got.body != `{"Records":[]}` || !strings.HasPrefix(got.auth, "AWS4-HMAC-SHA256") {
		t.Errorf("invocation type %q, body %q, auth %q", got.invType, got.body, got.auth)
	}
}

// TestInvokeByName checks WithFunctionNames: the path names the function
// alone, as sam local start-lambda needs, and the qualifier stays a query.
func TestInvokeByName(t *testing.T) { eachPath(t, testInvokeByName) }

func testInvokeByName(t *testing.T, path Option) {
	var gotPath, gotQualifier string
	url := faultServer(t, func(w http.ResponseWriter, r *http.Request) {
		gotPath, gotQualifier = r.URL.EscapedPath(), r.URL.Query().Get("Qualifier")
		w.Write([]byte(`{}`))
	})
	inv := newInvoker(t, url, path, WithFunctionNames(true))
	for _, fn := range []string{testARN + ":PROD", "123456789012:function:fn:PROD", "fn:PROD"} {
		if _, err := inv.Invoke(context.Background(), fn, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		if gotPath != "/2015-03-31/functions/fn/invocations" || gotQualifier != "PROD" {
			t.Errorf("%s: path %s qualifier %q", fn, gotPath, gotQualifier)
		}
	}
}

func TestInvokeFaults(t *testing.T) { eachPath(t, testInvokeFaults) }

func testInvokeFaults(t *testing.T, path Option) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		opts    []Option
		// Either a result or an error.
		want    *Result
		wantErr *InvokeError
	}{
		{
			name: "function error Unhandled",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Amz-Function-Error", "Unhandled")
				w.Header().Set("X-Amz-Executed-Version", "$LATEST")
				w.Write([]byte(`{"errorType":"Sandbox.Timedout","errorMessage":"RequestId: x Task timed out after 1.00 seconds"}`))
			},
			want: &Result{StatusCode: 200, FunctionError: "Unhandled", ErrorType: "Sandbox.Timedout", ExecutedVersion: "$LATEST",
				Payload: []byte(`{"errorType":"Sandbox.Timedout","errorMessage":"RequestId: x Task timed out after 1.00 seconds"}`)},
		},
		{
			name: "function error Handled",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Amz-Function-Error", "Handled")
				w.Write([]byte(`{"errorMessage":"boom"}`))
			},
			want: &Result{StatusCode: 200, FunctionError: "Handled", ExecutedVersion: "$LATEST", Payload: []byte(`{"errorMessage":"boom"}`)},
		},
		{
			name: "RIE-style error body is success in aws mode",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Write([]byte(`{"errorMessage":"x","errorType":"y"}`))
			},
			want: &Result{StatusCode: 200, ExecutedVersion: "$LATEST", Payload: []byte(`{"errorMessage":"x","errorType":"y"}`)},
		},
		{
			name: "429 with Retry-After",
			handler: func(w http.ResponseWriter, r *http.Request) {
				lambdaError(w, 429, "TooManyRequestsException", "Rate Exceeded.", "Retry-After", "3")
			},
			wantErr: &InvokeError{Type: "TooManyRequestsException", Message: "Rate Exceeded.", StatusCode: 429, Class: ClassRetry, RetryAfter: 3 * time.Second},
		},
		{
			name:    "500 ServiceException",
			handler: func(w http.ResponseWriter, r *http.Request) { lambdaError(w, 500, "ServiceException", "internal") },
			wantErr: &InvokeError{Type: "ServiceException", Message: "internal", StatusCode: 500, Class: ClassRetry},
		},
		{
			name:    "503 without a body",
			handler: func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) },
			wantErr: &InvokeError{StatusCode: 503, Class: ClassRetry},
		},
		{
			name: "502 KMS (configuration)",
			handler: func(w http.ResponseWriter, r *http.Request) {
				lambdaError(w, 502, "KMSAccessDeniedException", "denied")
			},
			wantErr: &InvokeError{Type: "KMSAccessDeniedException", Message: "denied", StatusCode: 502, Class: ClassRetryConfig},
		},
		{
			name:    "502 in aws mode is not a function error",
			handler: func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(502) },
			wantErr: &InvokeError{StatusCode: 502, Class: ClassRetry},
		},
		{
			name: "404 ResourceNotFound",
			handler: func(w http.ResponseWriter, r *http.Request) {
				lambdaError(w, 404, "ResourceNotFoundException", "Function not found: "+testARN)
			},
			wantErr: &InvokeError{Type: "ResourceNotFoundException", Message: "Function not found: " + testARN, StatusCode: 404, Class: ClassMapping},
		},
		{
			name: "413 RequestEntityTooLarge",
			handler: func(w http.ResponseWriter, r *http.Request) {
				lambdaError(w, 413, "RequestEntityTooLargeException", "Request must be smaller than 6291456 bytes for the InvokeFunction operation")
			},
			wantErr: &InvokeError{Type: "RequestEntityTooLargeException", Message: "Request must be smaller than 6291456 bytes for the InvokeFunction operation", StatusCode: 413, Class: ClassBadBatch},
		},
		{
			name: "400 InvalidRequestContent",
			handler: func(w http.ResponseWriter, r *http.Request) {
				lambdaError(w, 400, "InvalidRequestContentException", "Could not parse")
			},
			wantErr: &InvokeError{Type: "InvalidRequestContentException", Message: "Could not parse", StatusCode: 400, Class: ClassBadBatch},
		},
		{
			name: "409 ResourceConflict",
			handler: func(w http.ResponseWriter, r *http.Request) {
				lambdaError(w, 409, "ResourceConflictException", "The operation cannot be performed at this time.")
			},
			wantErr: &InvokeError{Type: "ResourceConflictException", Message: "The operation cannot be performed at this time.", StatusCode: 409, Class: ClassRetry},
		},
		{
			name: "dropped connection",
			handler: func(w http.ResponseWriter, r *http.Request) {
				c, _, err := w.(http.Hijacker).Hijack()
				if err == nil {
					c.Close()
				}
			},
			wantErr: &InvokeError{Class: ClassRetry},
		},
		{
			name: "slow endpoint",
			handler: func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body) // lets the server notice the client leaving
				select {
				case <-r.Context().Done():
				case <-time.After(5 * time.Second):
				}
			},
			opts:    []Option{WithTimeout(100 * time.Millisecond)},
			wantErr: &InvokeError{Type: "ClientTimeout", Message: "no answer within 100ms", Class: ClassRetry},
		},
		{
			name: "oversized response",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Write([]byte(`"` + strings.Repeat("x", 2000) + `"`))
			},
			opts: []Option{WithMaxResponseSize(1000)},
			want: &Result{StatusCode: 200, FunctionError: "Unhandled", ErrorType: "Function.ResponseSizeTooLarge", ExecutedVersion: "$LATEST",
				Payload: []byte(`{"errorMessage":"Response payload size exceeded maximum allowed payload size (1000 bytes).","errorType":"Function.ResponseSizeTooLarge"}`)},
		},
		{
			name: "oversized chunked response",
			handler: func(w http.ResponseWriter, r *http.Request) {
				for range 10 {
					w.Write([]byte(strings.Repeat("y", 300)))
					w.(http.Flusher).Flush()
				}
			},
			opts: []Option{WithMaxResponseSize(1000)},
			want: &Result{StatusCode: 200, FunctionError: "Unhandled", ErrorType: "Function.ResponseSizeTooLarge", ExecutedVersion: "$LATEST",
				Payload: []byte(`{"errorMessage":"Response payload size exceeded maximum allowed payload size (1000 bytes).","errorType":"Function.ResponseSizeTooLarge"}`)},
		},
		{
			name: "response exactly at the limit",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Write([]byte(strings.Repeat("z", 1000)))
			},
			opts: []Option{WithMaxResponseSize(1000)},
			want: &Result{StatusCode: 200, ExecutedVersion: "$LATEST", Payload: []byte(strings.Repeat("z", 1000))},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inv := newInvoker(t, faultServer(t, tc.handler), append(tc.opts, path)...)
			res, err := inv.Invoke(context.Background(), testARN, []byte(`{}`))
			if tc.wantErr != nil {
				var ie *InvokeError
				if !errors.As(err, &ie) {
					t.Fatalf("got %+v, %v; want *InvokeError", res, err)
				}
				if diff := cmp.Diff(tc.wantErr, ie, cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Err" }, cmp.Ignore())); diff != "" {
					t.Errorf("error (-want +got)\n%s\n%v", diff, err)
				}
				if ie.Err == nil || errors.Unwrap(ie) == nil {
					t.Error("InvokeError does not wrap the SDK error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(*tc.want, res); diff != "" {
				t.Errorf("result (-want +got)\n%s", diff)
			}
		})
	}
}

func TestInvokeContextCanceled(t *testing.T) { eachPath(t, testInvokeContextCanceled) }

func testInvokeContextCanceled(t *testing.T, path Option) {
	release := make(chan struct{})
	url := faultServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	inv := newInvoker(t, url, path)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := inv.Invoke(ctx, testARN, []byte(`{}`))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's error", err)
	}
	var ie *InvokeError
	if errors.As(err, &ie) {
		t.Fatalf("a canceled caller got an InvokeError: %v", err)
	}
}

// concurrencyServer records the highest number of requests in flight.
func concurrencyServer(t *testing.T, hold time.Duration) (string, *atomic.Int32) {
	var cur, peak atomic.Int32
	url := faultServer(t, func(w http.ResponseWriter, r *http.Request) {
		n := cur.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(hold)
		cur.Add(-1)
		w.Write([]byte(`null`))
	})
	return url, &peak
}

func TestInvokeConcurrencyBound(t *testing.T) { eachPath(t, testInvokeConcurrencyBound) }

func testInvokeConcurrencyBound(t *testing.T, path Option) {
	tests := []struct {
		name string
		opts []Option
		fns  []string
		want int32
	}{
		{"per function 2", []Option{WithMaxConcurrency(2)}, []string{testARN}, 2},
		{"two functions, 2 each", []Option{WithMaxConcurrency(2)}, []string{testARN, testARN + "2"}, 4},
		{"RIE: one at a time whatever the function", []Option{WithMode(ModeRIE), WithMaxConcurrency(8)}, []string{testARN, testARN + "2"}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			url, peak := concurrencyServer(t, 20*time.Millisecond)
			inv := newInvoker(t, url, append(tc.opts, path)...)
			var wg sync.WaitGroup
			for i := range 12 {
				wg.Go(func() {
					if _, err := inv.Invoke(context.Background(), tc.fns[i%len(tc.fns)], []byte(`{}`)); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			if got := peak.Load(); got != tc.want {
				t.Errorf("peak concurrency %d, want %d", got, tc.want)
			}
		})
	}
}

// Two invokers (two mappings) on one RIE endpoint still never overlap.
func TestInvokeRIESharedEndpoint(t *testing.T) {
	url, peak := concurrencyServer(t, 20*time.Millisecond)
	a := newInvoker(t, url, WithMode(ModeRIE))
	b := newInvoker(t, url, WithMode(ModeRIE), WithDirectHTTP(true))
	var wg sync.WaitGroup
	for i := range 8 {
		inv := a
		if i%2 == 1 {
			inv = b
		}
		wg.Go(func() {
			if _, err := inv.Invoke(context.Background(), "fn", []byte(`{}`)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := peak.Load(); got != 1 {
		t.Errorf("peak concurrency %d on one RIE endpoint", got)
	}
}

func TestInvokeRIEModeAnswers(t *testing.T) { eachPath(t, testInvokeRIEModeAnswers) }

func testInvokeRIEModeAnswers(t *testing.T, path Option) {
	var gotPath string
	tests := []struct {
		name    string
		status  int
		body    string
		want    Result
		wantErr Class
	}{
		{"success", 200, `{"a":1}`, Result{StatusCode: 200, ExecutedVersion: "$LATEST", Payload: []byte(`{"a":1}`)}, 0},
		{"handler error", 200, `{"errorMessage":"batch item failed","errorType":"customErr"}`,
			Result{StatusCode: 200, FunctionError: "Unhandled", ErrorType: "customErr", ExecutedVersion: "$LATEST",
				Payload: []byte(`{"errorMessage":"batch item failed","errorType":"customErr"}`)}, 0},
		{"timeout", 200, `Task timed out after 2.00 seconds`,
			Result{StatusCode: 200, FunctionError: "Unhandled", ErrorType: "Sandbox.Timedout", ExecutedVersion: "$LATEST",
				Payload: []byte(`Task timed out after 2.00 seconds`)}, 0},
		{"object with errorType only is a result", 200, `{"errorType":"x"}`,
			Result{StatusCode: 200, ExecutedVersion: "$LATEST", Payload: []byte(`{"errorType":"x"}`)}, 0},
		{"crash", 502, `{"errorMessage":"boom","errorType":"string","stackTrace":[]}`,
			Result{StatusCode: 200, FunctionError: "Unhandled", ErrorType: "Runtime.ExitError", ExecutedVersion: "$LATEST"}, 0},
		{"multi-concurrency RIE busy", 400, `{"errorType":"Runtime.Unavailable"}`, Result{}, ClassRetry},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			url := faultServer(t, func(w http.ResponseWriter, r *http.Request) {
				gotPath = r.URL.Path
				if tc.wantErr != 0 {
					w.Header().Set("Error-Type", "Runtime.Unavailable")
				}
				w.WriteHeader(tc.status)
				w.Write([]byte(tc.body))
			})
			inv := newInvoker(t, url, WithMode(ModeRIE), path)
			res, err := inv.Invoke(context.Background(), testARN+":PROD", []byte(`{}`))
			if gotPath != "/2015-03-31/functions/function/invocations" {
				t.Errorf("path %s", gotPath)
			}
			if tc.wantErr != 0 {
				var ie *InvokeError
				if !errors.As(err, &ie) || ie.Class != tc.wantErr {
					t.Fatalf("err = %v, want class %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			res.Payload = bytesOrNil(res.Payload, tc.want.Payload)
			if diff := cmp.Diff(tc.want, res); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

// bytesOrNil drops a crash body the test does not pin (the SDK keeps only
// its message).
func bytesOrNil(got, want []byte) []byte {
	if want == nil {
		return nil
	}
	return got
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]Mode{"": ModeAWS, "aws": ModeAWS, "rie": ModeRIE, "RIE": ModeRIE} {
		if got, err := ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseMode("local"); err == nil {
		t.Error("ParseMode(local) succeeded")
	}
}
