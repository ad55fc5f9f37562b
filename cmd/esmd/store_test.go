package main

import (
	"context"
	"io"
	"net/url"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/testenv"
)

// pgServe runs serve in the background on the PostgreSQL store dsn, with
// a data directory of its own (unused: the store is PostgreSQL), logging
// to log.
func pgServe(t *testing.T, dsn string, log io.Writer) (string, func()) {
	t.Helper()
	c := newCommon("test", io.Discard, "127.0.0.1:0")
	if err := c.fs.Parse([]string{"--store", dsn, "--data-dir", t.TempDir(), "--function-check", "never"}); err != nil {
		t.Fatal(err)
	}
	if log != nil {
		c.logLevel = "debug"
		return serveLogging(t, c, log)
	}
	return serveWith(t, c)
}

// serveLogging validates c and runs serve with it in the background,
// logging to w, and returns the API's address and a stop function that
// waits for serve to return.
func serveLogging(t *testing.T, c *common, w io.Writer) (string, func()) {
	t.Helper()
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, c, c.logger(w), func(_ *esm.Engine, addr string) error { addrc <- addr; return nil })
	}()
	select {
	case addr := <-addrc:
		return addr, func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		}
	case err := <-done:
		cancel()
		t.Fatalf("serve: %v", err)
	}
	return "", nil
}

// TestServePostgresStoreKeepsMappings is TestServeRestartKeepsMappings on
// the PostgreSQL store: the second esmd has another data directory and
// finds the mapping in the database. The URL's password appears in no log
// line.
func TestServePostgresStoreKeepsMappings(t *testing.T) {
	ctx := context.Background()
	queue := localQueue(t)
	u, err := url.Parse(testenv.PostgreSQLDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("postgres", "pg-s3cret") // trust authentication ignores it
	dsn := u.String()
	var log lockedBuffer
	addr, stop := pgServe(t, dsn, &log)
	out, err := client(addr).CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{
		FunctionName: aws.String("f"), EventSourceArn: aws.String(queue), BatchSize: aws.Int32(3), Enabled: aws.Bool(false)})
	if err != nil {
		t.Fatal(err)
	}
	stop()

	addr, stop = pgServe(t, dsn, &log)
	defer stop()
	got, err := client(addr).GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: out.UUID})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToInt32(got.BatchSize) != 3 || aws.ToString(got.EventSourceMappingArn) != aws.ToString(out.EventSourceMappingArn) {
		t.Errorf("after restart: %+v", got)
	}
	logs := log.String()
	if strings.Contains(logs, "pg-s3cret") {
		t.Errorf("the log shows the store's password:\n%s", logs)
	}
	if !strings.Contains(logs, "postgres:xxxxx@") {
		t.Errorf("the log does not name the store:\n%s", logs)
	}
}

func TestStoreFlagRefusesOtherURLs(t *testing.T) {
	c := newCommon("test", io.Discard, "127.0.0.1:0")
	c.store = "mysql://esmd:s3cret@db/esmd"
	_, err := openStore(t.Context(), c, c.logger(io.Discard))
	if err == nil || !strings.Contains(err.Error(), "want a postgres:// URL") || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("openStore: %v", err)
	}
}
