package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/esmd/esmd/checkpoint/pgstore"
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

// TestRunWorkersDeclareOnce: three `esmd run -f` workers started together
// on one PostgreSQL store with the same mappings file hold one mapping,
// not three: creation is serialised across workers, and the later
// workers update the mapping the first created.
func TestRunWorkersDeclareOnce(t *testing.T) {
	queue := localQueue(t)
	dsn := testenv.PostgreSQLDatabase(t)
	file := filepath.Join(t.TempDir(), "mappings.yaml")
	if err := os.WriteFile(file, []byte("- FunctionName: f\n  EventSourceArn: "+queue+"\n  Enabled: false\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const workers = 3
	declared := regexp.MustCompile(`msg="mapping (created|updated)"`)
	logs := make([]*lockedBuffer, workers)
	codes := make(chan int, workers)
	for i := range workers {
		logs[i] = &lockedBuffer{}
		args := []string{"run", "-f", file, "--store", dsn, "--data-dir", t.TempDir(), "--function-check", "never"}
		go func() { codes <- run(ctx, args, nil, io.Discard, logs[i]) }()
	}
	testenv.Eventually(t, 60*time.Second, func(context.Context) error {
		for i, l := range logs {
			if !declared.MatchString(l.String()) {
				return fmt.Errorf("worker %d has not declared the mapping: %s", i, l.String())
			}
		}
		return nil
	})
	cancel()
	for range workers {
		if c := <-codes; c != 0 {
			t.Errorf("exit %d", c)
		}
	}
	created := 0
	for _, l := range logs {
		created += strings.Count(l.String(), `msg="mapping created"`)
	}
	s, err := pgstore.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ms, err := s.LoadMappings(context.Background())
	if err != nil || len(ms) != 1 || created != 1 {
		t.Errorf("%d mappings stored, %d created (%v)", len(ms), created, err)
	}
}
