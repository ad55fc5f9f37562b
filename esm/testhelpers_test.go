package esm

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/esmd/esmd/internal/testenv"
)

const (
	testAccount = "111111111111"
	testRegion  = "us-east-1"
	sqsArn      = "arn:aws:sqs:us-east-1:111111111111:my-queue"
	fifoArn     = "arn:aws:sqs:us-east-1:111111111111:my-queue.fifo"
	kinesisArn  = "arn:aws:kinesis:us-east-1:111111111111:stream/my-stream"
	ddbArn      = "arn:aws:dynamodb:us-east-1:111111111111:table/my-table/stream/2024-01-01T00:00:00.000"
	mskArn      = "arn:aws:kafka:us-east-1:111111111111:cluster/my-cluster/1234abcd-12ab-34cd-56ef-1234567890ab-1"
	mqArn       = "arn:aws:mq:us-east-1:111111111111:broker:my-broker:b-1234abcd-56ef-78ab-90cd-1234567890ab"
	docdbArn    = "arn:aws:rds:us-east-1:111111111111:cluster:my-docdb"
	secretArn   = "arn:aws:secretsmanager:us-east-1:111111111111:secret:my-secret"
)

// fakeFunctions is a FunctionChecker over a fixed set of ARNs.
type fakeFunctions struct {
	exists map[string]bool
	calls  int
}

func (f *fakeFunctions) FunctionExists(_ context.Context, arn string) (bool, error) {
	f.calls++
	return f.exists[arn], nil
}

func newTestEngine(t *testing.T, opts ...Option) *Engine {
	t.Helper()
	base := []Option{WithRegion(testRegion), WithAccount(testAccount), WithRunnerBackoff(time.Millisecond, 10*time.Millisecond)}
	e, err := New(context.Background(), append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	e.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return e
}

// waitState waits until the mapping reaches want and returns it.
func waitState(t *testing.T, e *Engine, id string, want State) *Mapping {
	t.Helper()
	var m *Mapping
	testenv.Eventually(t, 5*time.Second, func(context.Context) error {
		var err error
		if m, err = e.Get(context.Background(), id); err != nil {
			t.Fatalf("get %s: %v", id, err)
		}
		if m.State != want {
			return fmt.Errorf("mapping %s: state %s, want %s", id, m.State, want)
		}
		return nil
	})
	return m
}

func asAPIError(t *testing.T, err error) *Error {
	t.Helper()
	var ae *Error
	if !errors.As(err, &ae) {
		t.Fatalf("error %v (%T) is not an *esm.Error", err, err)
	}
	return ae
}

func sp(s string) *string { return &s }
func ip(i int64) *int64   { return &i }
func bp(b bool) *bool     { return &b }
