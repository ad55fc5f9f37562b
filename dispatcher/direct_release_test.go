package dispatcher

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// lateCloser is a transport that answers at once and reads and closes the
// request body later, in another goroutine, as net/http's does when the
// server answers before the whole request was written.
type lateCloser struct {
	delay  time.Duration
	read   atomic.Value // []byte: the body as the transport read it
	closed atomic.Int64 // unix ns of the body's Close
	fail   error        // answer with this error instead of a response
}

func (lc *lateCloser) RoundTrip(req *http.Request) (*http.Response, error) {
	go func() {
		time.Sleep(lc.delay)
		b, _ := io.ReadAll(req.Body)
		lc.read.Store(b)
		lc.closed.Store(time.Now().UnixNano())
		req.Body.Close()
	}()
	if lc.fail != nil {
		return nil, lc.fail
	}
	return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("null")), Request: req}, nil
}

// TestDirectReleasesPayload: on the direct path Invoke returns only after
// the transport closed the request body, so the caller may reuse the
// payload (the pipeline does); ReleasesPayload says so, and the SDK path,
// which makes no such promise, says it does not.
func TestDirectReleasesPayload(t *testing.T) {
	for _, fail := range []error{nil, errors.New("connection reset")} {
		lc := &lateCloser{delay: 50 * time.Millisecond, fail: fail}
		inv := newInvoker(t, "http://127.0.0.1:1", WithDirectHTTP(true), WithHTTPClient(&http.Client{Transport: lc}))
		if !inv.ReleasesPayload() {
			t.Fatal("direct path: ReleasesPayload() = false")
		}
		payload := bytes.Repeat([]byte("x"), 1<<20)
		_, err := inv.Invoke(context.Background(), testARN, payload)
		returned := time.Now().UnixNano()
		if (err != nil) != (fail != nil) {
			t.Fatalf("transport error %v: Invoke error %v", fail, err)
		}
		closed := lc.closed.Load()
		if closed == 0 || closed > returned {
			t.Fatalf("transport error %v: Invoke returned before the transport closed the request body", fail)
		}
		// The caller reuses the memory: what the transport read is not affected.
		clear(payload)
		if got, _ := lc.read.Load().([]byte); !bytes.Equal(got, bytes.Repeat([]byte("x"), 1<<20)) {
			t.Fatalf("transport error %v: the transport read %d bytes, not the payload", fail, len(got))
		}
	}
	if newInvoker(t, "http://127.0.0.1:1", WithDirectHTTP(false)).ReleasesPayload() {
		t.Fatal("SDK path: ReleasesPayload() = true")
	}
}
