package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/esmd/esmd/esm"
)

// A Lambda endpoint that knows one function, answering GetFunction as the
// Lambda API does (no real Lambda control plane can run here; RIE has no
// GetFunction).
func fakeLambda(t *testing.T, calls *atomic.Int32) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if !strings.HasPrefix(r.URL.Path, "/2015-03-31/functions/") || r.Method != http.MethodGet {
			t.Errorf("unexpected call %s %s", r.Method, r.URL.Path)
		}
		name := strings.TrimPrefix(r.URL.Path, "/2015-03-31/functions/")
		if name == "arn:aws:lambda:us-east-1:000000000000:function:exists" {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"Configuration":{"FunctionName":"exists","FunctionArn":"`+name+`"}}`)
			return
		}
		w.Header().Set("X-Amzn-ErrorType", "ResourceNotFoundException")
		w.WriteHeader(404)
		io.WriteString(w, `{"Type":"User","Message":"Function not found: `+name+`"}`)
	}))
}

func TestFunctionCheckUsesGetFunction(t *testing.T) {
	queue := localQueue(t)
	var calls atomic.Int32
	lam := fakeLambda(t, &calls)
	defer lam.Close()
	c := newCommon("test", io.Discard, "127.0.0.1:0")
	c.dataDir = t.TempDir()
	c.lambdaEndpoint = lam.URL
	c.functionCheck = "auto"
	ctx := context.Background()
	addr, stop := serveWith(t, c)
	defer stop()
	cl := client(addr)
	_, err := cl.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("missing"),
		EventSourceArn: aws.String(queue), Enabled: aws.Bool(false)})
	var ipv *types.InvalidParameterValueException
	if !errors.As(err, &ipv) || aws.ToString(ipv.Message) != "Function does not exist" {
		t.Fatalf("missing function: %v", err)
	}
	if _, err := cl.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("exists"),
		EventSourceArn: aws.String(queue), Enabled: aws.Bool(false)}); err != nil {
		t.Fatalf("existing function: %v", err)
	}
	if calls.Load() != 2 {
		t.Errorf("%d GetFunction calls, want 2", calls.Load())
	}
}

func TestRIEModeSkipsTheLookup(t *testing.T) {
	queue := localQueue(t)
	var calls atomic.Int32
	lam := fakeLambda(t, &calls)
	defer lam.Close()
	c := newCommon("test", io.Discard, "127.0.0.1:0")
	c.dataDir = t.TempDir()
	c.lambdaEndpoint = lam.URL
	c.invokeMode = "rie"
	ctx := context.Background()
	addr, stop := serveWith(t, c)
	defer stop()
	if _, err := client(addr).CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("function"),
		EventSourceArn: aws.String(queue), Enabled: aws.Bool(false)}); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 0 {
		t.Errorf("rie mode called GetFunction %d times", calls.Load())
	}
}

// TestFunctionLookupUnreachable: when GetFunction cannot reach esmd's
// Lambda endpoint, CreateEventSourceMapping answers AWS's ServiceException
// and the endpoint's address stays out of the answer (it goes to the log).
func TestFunctionLookupUnreachable(t *testing.T) {
	gone := httptest.NewServer(http.NotFoundHandler())
	endpoint := gone.URL
	gone.Close() // nothing listens there any more: connection refused
	c := newCommon("test", io.Discard, "127.0.0.1:0")
	c.dataDir = t.TempDir()
	c.lambdaEndpoint = endpoint
	c.functionCheck = "auto"
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	ctx, cancel := context.WithCancel(context.Background())
	addrc, done := make(chan string, 1), make(chan error, 1)
	go func() {
		done <- serve(ctx, c, c.logger(&logs), func(_ *esm.Engine, addr string) error { addrc <- addr; return nil })
	}()
	var addr string
	select {
	case addr = <-addrc:
	case err := <-done:
		cancel()
		t.Fatalf("serve: %v", err)
	}
	_, err := client(addr).CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("f"),
		EventSourceArn: aws.String("arn:aws:sqs:us-east-1:000000000000:q"), Enabled: aws.Bool(false)})
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve: %v", err)
	}
	var se *types.ServiceException
	if !errors.As(err, &se) || aws.ToString(se.Message) != "An error occurred and the request cannot be processed." {
		t.Fatalf("err = %v, want ServiceException", err)
	}
	host := strings.TrimPrefix(endpoint, "http://")
	if strings.Contains(err.Error(), host) {
		t.Errorf("the answer names the endpoint: %v", err)
	}
	if !strings.Contains(logs.String(), host) {
		t.Errorf("the log does not name the endpoint:\n%s", logs.String())
	}
}
