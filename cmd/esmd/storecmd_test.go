package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/esmd/esmd/checkpoint"
)

// newStore writes a store in a new data directory with the given mappings
// (UUID -> JSON) and a position for each, and returns the directory.
func newStore(t *testing.T, mappings map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	s, err := checkpoint.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for id, js := range mappings {
		if err := s.SaveMapping(ctx, id, []byte(js)); err != nil {
			t.Fatal(err)
		}
		if err := s.SetPositions(ctx, id, map[string]string{"shardId-000000000000": "1", "shardId-000000000001": "2"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

var goodMappings = map[string]string{
	"8a0c5c1e-0000-4000-8000-000000000001": `{"UUID":"8a0c5c1e-0000-4000-8000-000000000001","FunctionArn":"arn:aws:lambda:us-east-1:000000000000:function:f","State":"Disabled"}`,
	"8a0c5c1e-0000-4000-8000-000000000002": `{"UUID":"8a0c5c1e-0000-4000-8000-000000000002","FunctionArn":"arn:aws:lambda:us-east-1:000000000000:function:g","State":"Enabled"}`,
}

func TestStoreCheck(t *testing.T) {
	good := newStore(t, goodMappings)
	badJSON := newStore(t, map[string]string{"8a0c5c1e-0000-4000-8000-000000000003": `{"UUID": 7}`})
	wrongID := newStore(t, map[string]string{"8a0c5c1e-0000-4000-8000-000000000004": `{"UUID":"someone-else"}`})
	file := func(dir string) string { return filepath.Join(dir, checkpoint.FileName) }
	damagedDir := func(spoil func(b []byte) []byte) string {
		b, err := os.ReadFile(file(good))
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		os.WriteFile(file(dir), spoil(b), 0o600)
		return dir
	}
	truncated := damagedDir(func(b []byte) []byte { return b[:3*4096+100] })
	empty := damagedDir(func([]byte) []byte { return nil })
	held := newStore(t, goodMappings)
	s, err := checkpoint.Open(held)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	cases := []struct {
		name   string
		args   []string
		code   int
		stdout []string
		stderr string
	}{
		{"sound, by data dir", []string{"--data-dir", good}, 0, []string{file(good) + ": sound", "2 mappings, 4 positions", "page size 4096"}, ""},
		{"sound, by file", []string{"--store", file(good)}, 0, []string{": sound"}, ""},
		{"truncated", []string{"--data-dir", truncated}, 1, []string{file(truncated) + ": NOT SOUND", "problem: the file is truncated"}, "restore a copy made with 'esmd store backup'"},
		{"0-byte file", []string{"--store", file(empty)}, 1, []string{"NOT SOUND"}, "the file is empty (0 bytes)"},
		{"missing file", []string{"--data-dir", t.TempDir()}, 1, nil, "no such file"},
		{"mapping esmd cannot decode", []string{"--data-dir", badJSON}, 1, []string{"NOT SOUND", "problem: mapping 8a0c5c1e-0000-4000-8000-000000000003: json"}, "1 problems"},
		{"mapping under another UUID", []string{"--data-dir", wrongID}, 1, []string{"problem: mapping 8a0c5c1e-0000-4000-8000-000000000004: stored under another UUID"}, ""},
		{"store held by a running esmd", []string{"--data-dir", held}, 1, nil, "esmd store backup --endpoint"},
		{"extra argument", []string{"--data-dir", good, "x"}, 2, nil, "unexpected arguments"},
		{"a PostgreSQL store", []string{"--store", "postgres://esmd:secret@127.0.0.1/esmd"}, 1, nil, "back PostgreSQL up with pg_dump"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), append([]string{"store", "check"}, tc.args...), nil, &stdout, &stderr)
			if code != tc.code || !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("exit %d, stderr %q", code, stderr.String())
			}
			if strings.Contains(stderr.String(), "secret") {
				t.Errorf("stderr shows the URL's password: %s", stderr.String())
			}
			if tc.stdout == nil && stdout.Len() > 0 {
				t.Errorf("stdout %q", stdout.String())
			}
			for _, want := range tc.stdout {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("stdout %q lacks %q", stdout.String(), want)
				}
			}
		})
	}
}

func TestStoreBackupOffline(t *testing.T) {
	dir := newStore(t, goodMappings)
	out := filepath.Join(t.TempDir(), "copy.db")
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"store", "backup", "--data-dir", dir, out}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "wrote "+out) {
		t.Errorf("stdout %q", stdout.String())
	}
	if got := storedMappings(t, out); !slices.Equal(got, sortedKeys(goodMappings)) {
		t.Errorf("copy holds %v", got)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("copy mode: %v %v", fi, err)
	}

	// Refusals: the copy over the store itself, a damaged store (no file
	// is written), no FILE.
	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, checkpoint.FileName), bytes.Repeat([]byte("garbage!"), 1024), 0o600)
	badOut := filepath.Join(t.TempDir(), "copy.db")
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"--data-dir", dir, filepath.Join(dir, checkpoint.FileName)}, 1, "would overwrite the store"},
		{[]string{"--data-dir", bad, badOut}, 1, "is damaged"},
		{[]string{"--data-dir", dir}, 2, "name one FILE"},
		{[]string{"--endpoint", "ftp://x", badOut}, 1, "not an http(s) URL"},
	} {
		stderr.Reset()
		if code := run(context.Background(), append([]string{"store", "backup"}, tc.args...), nil, io.Discard, &stderr); code != tc.code || !strings.Contains(stderr.String(), tc.stderr) {
			t.Errorf("%v: exit %d: %s", tc.args, code, stderr.String())
		}
	}
	if _, err := os.Stat(badOut); !os.IsNotExist(err) {
		t.Errorf("a copy of a damaged store was written: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(badOut), ".*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// TestStoreBackupThroughServe backs up the store of a running serve (which
// holds its file locked) through its endpoint, with and without signing
// credentials, restores the copy into a new data directory, and serves the
// same mappings from it.
func TestStoreBackupThroughServe(t *testing.T) {
	ctx := context.Background()
	addr, stop := startServe(t, t.TempDir())
	defer stop()
	want := createMappings(t, addr, 3)

	for _, signed := range []bool{false, true} {
		if signed {
			t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
			t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
		} else {
			t.Setenv("AWS_ACCESS_KEY_ID", "")
			t.Setenv("AWS_PROFILE", "")
		}
		out := filepath.Join(t.TempDir(), "copy.db")
		var stderr bytes.Buffer
		if code := run(ctx, []string{"store", "backup", "--endpoint", "http://" + addr, out}, nil, io.Discard, &stderr); code != 0 {
			t.Fatalf("signed %v: exit %d: %s", signed, code, stderr.String())
		}
		restored := t.TempDir()
		copyFile(t, out, filepath.Join(restored, checkpoint.FileName))
		addr2, stop2 := startServe(t, restored)
		if got := listMappings(t, addr2); !slices.Equal(got, want) {
			t.Errorf("signed %v: restored store serves %v, want %v", signed, got, want)
		}
		stop2()
	}

	// Only GET; and only for the embedded store.
	rec := httptest.NewRecorder()
	withStoreBackup(http.NotFoundHandler(), struct{}{}, slog.New(slog.DiscardHandler)).ServeHTTP(rec, httptest.NewRequest("GET", storeBackupPath, nil))
	if rec.Code != http.StatusNotImplemented || !strings.Contains(rec.Body.String(), "pg_dump") {
		t.Errorf("backup of a store that cannot: %d %s", rec.Code, rec.Body.String())
	}
	resp, err := http.Post("http://"+addr+storeBackupPath, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %s", resp.Status)
	}
}

// TestStoreCommandsWithTheBinary runs the real binary: esmd serve holds the
// store; store check on it says it is in use; store backup --endpoint
// copies it; the copy checks sound; a serve on the restored copy lists the
// same mappings.
func TestStoreCommandsWithTheBinary(t *testing.T) {
	bin := buildBinary(t)
	data := t.TempDir()
	cmd, addr := startBinary(t, bin, "--data-dir", data, "--function-check", "never")
	want := createMappings(t, addr, 4)

	esmd := func(args ...string) (int, string) {
		t.Helper()
		c := exec.Command(bin, args...)
		c.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test", "AWS_REGION=us-east-1")
		out, err := c.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		} else if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}
	if code, out := esmd("store", "check", "--data-dir", data); code != 1 || !strings.Contains(out, "in use") {
		t.Errorf("check of the held store: exit %d: %s", code, out)
	}
	backup := filepath.Join(t.TempDir(), "esmd-backup.db")
	if code, out := esmd("store", "backup", "--endpoint", "http://"+addr, backup); code != 0 {
		t.Fatalf("backup: exit %d: %s", code, out)
	}
	if code, out := esmd("store", "check", "--store", backup); code != 0 || !strings.Contains(out, ": sound") || !strings.Contains(out, "4 mappings") {
		t.Errorf("check of the copy: exit %d: %s", code, out)
	}
	cmd.Process.Kill()
	cmd.Wait()

	restored := t.TempDir()
	copyFile(t, backup, filepath.Join(restored, checkpoint.FileName))
	_, addr2 := startBinary(t, bin, "--data-dir", restored, "--function-check", "never")
	if got := listMappings(t, addr2); !slices.Equal(got, want) {
		t.Errorf("restored store serves %v, want %v", got, want)
	}
}

// createMappings creates n disabled Kinesis mappings and returns their
// UUIDs, sorted.
func createMappings(t *testing.T, addr string, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		out, err := client(addr).CreateEventSourceMapping(context.Background(), &lambda.CreateEventSourceMappingInput{
			FunctionName:     aws.String("f"),
			EventSourceArn:   aws.String("arn:aws:kinesis:us-east-1:000000000000:stream/s" + string(rune('a'+i))),
			StartingPosition: "TRIM_HORIZON",
			Enabled:          aws.Bool(false),
		})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, aws.ToString(out.UUID))
	}
	slices.Sort(ids)
	return ids
}

func listMappings(t *testing.T, addr string) []string {
	t.Helper()
	out, err := client(addr).ListEventSourceMappings(context.Background(), &lambda.ListEventSourceMappingsInput{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range out.EventSourceMappings {
		ids = append(ids, aws.ToString(m.UUID))
	}
	slices.Sort(ids)
	return ids
}

func storedMappings(t *testing.T, path string) []string {
	t.Helper()
	s, err := checkpoint.OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ms, err := s.LoadMappings(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for id := range ms {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func sortedKeys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestStoreCommandLine(t *testing.T) {
	for _, tc := range []struct {
		args           []string
		code           int
		stdout, stderr string
	}{
		{[]string{"help", "store"}, 0, "esmd store backup", ""},
		{[]string{"help"}, 0, "esmd store check", ""},
		{[]string{"store"}, 2, "", "esmd store check"},
		{[]string{"store", "bogus"}, 2, "", `unknown command "bogus"`},
		{[]string{"store", "check", "-h"}, 0, "", "-store"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), tc.args, nil, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderr) {
			t.Errorf("%v: exit %d stdout %q stderr %q", tc.args, code, stdout.String(), stderr.String())
		}
	}
}

// TestServeWarnsOfAStoreReadFromTheOlderMeta: with one meta page damaged,
// serve starts on the other (bbolt's fallback: the same mappings here) and
// logs what it found.
func TestServeWarnsOfAStoreReadFromTheOlderMeta(t *testing.T) {
	dir := newStore(t, goodMappings)
	path := filepath.Join(dir, checkpoint.FileName)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	clear(b[16:80]) // the meta of page 0
	os.WriteFile(path, b, 0o600)
	c := newCommon("test", io.Discard, "127.0.0.1:0")
	c.dataDir, c.functionCheck = dir, "never"
	var log lockedBuffer
	addr, stop := serveLogging(t, c, &log)
	defer stop()
	if got := listMappings(t, addr); !slices.Equal(got, sortedKeys(goodMappings)) {
		t.Errorf("serves %v", got)
	}
	if !strings.Contains(log.String(), "meta page 0 is damaged") {
		t.Errorf("no warning in the log: %s", log.String())
	}
}

// blockingStore is a backupStore whose Backup waits for release.
type blockingStore struct {
	dir              string
	entered, release chan struct{}
}

func (b *blockingStore) Path() string { return filepath.Join(b.dir, checkpoint.FileName) }
func (b *blockingStore) Backup(w io.Writer, _ func(int64)) (int64, error) {
	close(b.entered)
	<-b.release
	n, err := w.Write([]byte("copy"))
	return int64(n), err
}

// TestStoreBackupOneAtATime: a backup while another runs is refused with
// 503; the first completes, and leaves no temporary file beside the store.
func TestStoreBackupOneAtATime(t *testing.T) {
	st := &blockingStore{dir: t.TempDir(), entered: make(chan struct{}), release: make(chan struct{})}
	h := withStoreBackup(http.NotFoundHandler(), st, slog.New(slog.DiscardHandler))
	first := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.ServeHTTP(first, httptest.NewRequest("GET", storeBackupPath, nil))
	}()
	<-st.entered
	second := httptest.NewRecorder()
	h.ServeHTTP(second, httptest.NewRequest("GET", storeBackupPath, nil))
	if second.Code != http.StatusServiceUnavailable || second.Header().Get("Retry-After") == "" {
		t.Errorf("second backup: %d %v", second.Code, second.Header())
	}
	close(st.release)
	<-done
	if first.Code != http.StatusOK || first.Body.String() != "copy" || first.Header().Get("Content-Length") != "4" {
		t.Errorf("first backup: %d %v %q", first.Code, first.Header(), first.Body.String())
	}
	if left, _ := os.ReadDir(st.dir); len(left) != 0 {
		t.Errorf("left beside the store: %v", left)
	}
}

// TestStoreBackupBehindAuth: with --api-credentials, the backup endpoint is
// behind SigV4 as the API is: unsigned and wrongly signed requests are
// refused, and the CLI signs with the credentials in the environment or
// of --profile.
func TestStoreBackupBehindAuth(t *testing.T) {
	addr := serveWithCredentials(t)
	home := t.TempDir()
	shared := filepath.Join(home, "credentials")
	os.WriteFile(shared, []byte("[esmd]\naws_access_key_id = "+apiKeyID+"\naws_secret_access_key = "+apiSecret+"\n"), 0o600)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", shared)
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(home, "config"))
	t.Setenv("AWS_SESSION_TOKEN", "")
	for _, tc := range []struct {
		name        string
		key, secret string
		args        []string
		code        int
		stderr      string
	}{
		{"unsigned", "", "", nil, 1, "403 Forbidden: MissingAuthenticationTokenException"},
		{"unknown key", "AKIDUNKNOWN", "x", nil, 1, "UnrecognizedClientException"},
		{"wrong secret", apiKeyID, "wrong", nil, 1, "InvalidSignatureException"},
		{"credentials from the environment", apiKeyID, apiSecret, nil, 0, ""},
		{"--profile", "", "", []string{"--profile", "esmd"}, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("AWS_ACCESS_KEY_ID", tc.key)
			t.Setenv("AWS_SECRET_ACCESS_KEY", tc.secret)
			t.Setenv("AWS_PROFILE", "")
			out := filepath.Join(t.TempDir(), "copy.db")
			var stderr bytes.Buffer
			args := append(append([]string{"store", "backup", "--endpoint", "http://" + addr}, tc.args...), out)
			code := run(context.Background(), args, nil, io.Discard, &stderr)
			if code != tc.code || !strings.Contains(stderr.String(), tc.stderr) {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			if _, err := os.Stat(out); (err == nil) != (tc.code == 0) {
				t.Errorf("copy written: %v", err)
			}
		})
	}
}
