package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/esmd/esmd/checkpoint"
	"github.com/esmd/esmd/internal/testenv"
)

func client(addr string) *lambda.Client {
	return lambda.New(lambda.Options{
		BaseEndpoint: aws.String("http://" + addr), Region: "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("t", "t", ""), RetryMaxAttempts: 1,
	})
}

// createMapping creates the mapping in (after edit, when not nil) through
// cl and returns its UUID; it is deleted when the test ends.
func createMapping(t *testing.T, cl *lambda.Client, in *lambda.CreateEventSourceMappingInput, edit func(*lambda.CreateEventSourceMappingInput)) string {
	t.Helper()
	if edit != nil {
		edit(in)
	}
	out, err := cl.CreateEventSourceMapping(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	id := aws.ToString(out.UUID)
	t.Cleanup(func() {
		_, _ = cl.DeleteEventSourceMapping(context.Background(), &lambda.DeleteEventSourceMappingInput{UUID: aws.String(id)})
	})
	return id
}

// getMapping reads a mapping through cl.
func getMapping(t *testing.T, cl *lambda.Client, id string) *lambda.GetEventSourceMappingOutput {
	t.Helper()
	out, err := cl.GetEventSourceMapping(context.Background(), &lambda.GetEventSourceMappingInput{UUID: aws.String(id)})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// startServe runs serve on a data directory in the background and returns
// its address and a stop function that waits for it to return.
func startServe(t *testing.T, dir string) (string, func()) {
	t.Helper()
	c := newCommon("test", io.Discard, "127.0.0.1:0")
	c.dataDir = dir
	c.functionCheck = "never"
	return serveWith(t, c)
}

// serveWith validates c and runs serve with it in the background, returning
// the API's address and a stop function that waits for serve to return.
func serveWith(t *testing.T, c *common) (string, func()) {
	t.Helper()
	return serveLogging(t, c, io.Discard)
}

// localQueue starts fauxqs, points esmd's SQS client at it
// (AWS_ENDPOINT_URL_SQS, as a user would) and returns the ARN of a new
// queue: creating an SQS mapping looks the queue up, as AWS does.
func localQueue(t *testing.T) string {
	t.Helper()
	testenv.Skip(t)
	fq := testenv.FauxQS(t)
	t.Setenv("AWS_ENDPOINT_URL_SQS", fq)
	_, arn := sqsQueue(t, sqs.NewFromConfig(testenv.AWSConfig(fq)), "q", nil)
	return arn
}

func TestServeRestartKeepsMappings(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	queue := localQueue(t)
	addr, stop := startServe(t, dir)
	out, err := client(addr).CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{
		FunctionName: aws.String("f"), EventSourceArn: aws.String(queue), BatchSize: aws.Int32(3), Enabled: aws.Bool(false)})
	if err != nil {
		t.Fatal(err)
	}
	stop()

	addr, stop = startServe(t, dir)
	defer stop()
	got, err := client(addr).GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: out.UUID})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToInt32(got.BatchSize) != 3 || aws.ToString(got.EventSourceMappingArn) != aws.ToString(out.EventSourceMappingArn) {
		t.Errorf("after restart: %+v", got)
	}
}

func TestRunDeclaresTheFileAndKeepsUUIDs(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "mappings.yaml")
	queue := localQueue(t)
	os.WriteFile(file, []byte(`
- FunctionName: f
  EventSourceArn: `+queue+`
  Enabled: false
  BatchSize: 5
- FunctionName: g
  EventSourceArn: arn:aws:kinesis:us-east-1:000000000000:stream/s
  StartingPosition: LATEST
`), 0o600)
	data := filepath.Join(dir, "data")
	// run declares the file's mappings once the engine is up, logging
	// each, and then serves until it is stopped.
	declared := regexp.MustCompile(`msg="mapping (created|updated)"`)
	runOnce := func() map[string]string {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var stderr lockedBuffer
		code := make(chan int, 1)
		go func() {
			code <- run(ctx, []string{"run", "-f", file, "--data-dir", data, "--function-check", "never", "--log-level", "info"}, nil, io.Discard, &stderr)
		}()
		testenv.Eventually(t, 30*time.Second, func(context.Context) error {
			select {
			case c := <-code:
				t.Fatalf("exit %d before the mappings were declared: %s", c, stderr.String())
			default:
			}
			if n := len(declared.FindAllString(stderr.String(), -1)); n != 2 {
				return fmt.Errorf("%d of 2 mappings declared: %s", n, stderr.String())
			}
			return nil
		})
		cancel()
		if c := <-code; c != 0 {
			t.Fatalf("exit %d: %s", c, stderr.String())
		}
		s, err := checkpoint.Open(data)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ms, _ := s.LoadMappings(context.Background())
		out := map[string]string{}
		for id, b := range ms {
			out[id] = string(b)
		}
		return out
	}
	first := runOnce()
	if len(first) != 2 {
		t.Fatalf("%d mappings stored", len(first))
	}
	second := runOnce()
	for id := range first {
		if _, ok := second[id]; !ok {
			t.Errorf("mapping %s not kept across runs", id)
		}
	}
	if len(second) != 2 {
		t.Errorf("%d mappings after the second run", len(second))
	}
}

func TestRunFileErrors(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]string{
		`{"FunctionName":"f","EventSourceArn":"arn:aws:sqs:us-east-1:000000000000:q","BatchSize":20}`: "Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10",
		`{"EventSourceMappings":[{"FunctionName":"f"}]}`:                                              "Unrecognized event source.",
		`[{"FunctionName":"f","BatchSize":"x"}]`:                                                      "InvalidRequestContentException",
		`[]`:                                                                                          "no mappings declared",
		"key: [unclosed":                                                                              "mappings.json",
	}
	for content, want := range cases {
		file := filepath.Join(dir, "mappings.json")
		os.WriteFile(file, []byte(content), 0o600)
		var stderr bytes.Buffer
		code := run(context.Background(), []string{"run", "-f", file, "--data-dir", filepath.Join(dir, "d"), "--function-check", "never"}, nil, io.Discard, &stderr)
		if code != 1 || !strings.Contains(stderr.String(), want) {
			t.Errorf("%s: exit %d, stderr %q, want %q", content, code, stderr.String(), want)
		}
	}
}

func TestCommandLine(t *testing.T) {
	cases := []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"--version"}, 0, "esmd ", ""},
		{[]string{"version"}, 0, "esmd ", ""},
		{[]string{"help"}, 0, "esmd serve", ""},
		{[]string{"help", "serve"}, 0, "-addr", ""},
		{[]string{"help", "run"}, 0, "mappings file", ""},
		{nil, 2, "", "Usage:"},
		{[]string{"bogus"}, 2, "", `unknown command "bogus"`},
		{[]string{"serve", "--log-format", "xml"}, 2, "", "--log-format must be text or json"},
		{[]string{"serve", "--invoke-mode", "x"}, 2, "", "--invoke-mode must be aws or rie"},
		{[]string{"run"}, 2, "", "-f FILE is required"},
		{[]string{"serve", "--invoke-path", "x"}, 2, "", "--invoke-path must be direct or sdk"},
		{[]string{"serve", "extra"}, 2, "", "unexpected arguments"},
	}
	for _, tc := range cases {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), tc.args, nil, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderr) {
			t.Errorf("%v: exit %d stdout %q stderr %q", tc.args, code, stdout.String(), stderr.String())
		}
	}
}

func TestCorruptStoreIsReported(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, checkpoint.FileName), bytes.Repeat([]byte("garbage!"), 1000), 0o600)
	var stderr bytes.Buffer
	code := run(context.Background(), []string{"serve", "--data-dir", dir, "--addr", "127.0.0.1:0"}, nil, io.Discard, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), filepath.Join(dir, checkpoint.FileName)) {
		t.Errorf("exit %d: %s", code, stderr.String())
	}
}

// lockedBuffer is a bytes.Buffer that one goroutine writes while another
// reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// invokeRecorder is a no-op Lambda Invoke endpoint (a function's stand-in
// for the binary tests) that counts invocations and how often each record,
// named by keys, was delivered.
type invokeRecorder struct {
	keys    func(body []byte) ([]string, error)
	mu      sync.Mutex
	seen    map[string]int
	order   []string // every delivery, in the order recorded
	invokes int
}

func newInvokeRecorder(keys func([]byte) ([]string, error)) *invokeRecorder {
	return &invokeRecorder{keys: keys, seen: map[string]int{}}
}

func (r *invokeRecorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	var keys []string
	if err == nil {
		keys, err = r.keys(body)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	// Some work per batch, so a kill finds batches in flight.
	time.Sleep(10 * time.Millisecond)
	r.mu.Lock()
	r.invokes++
	for _, k := range keys {
		r.seen[k]++
	}
	r.order = append(r.order, keys...)
	r.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, "null")
}

// count returns the invocations, the distinct records delivered and the
// deliveries in all.
func (r *invokeRecorder) count() (invokes, distinct, total int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range r.seen {
		total += n
	}
	return r.invokes, len(r.seen), total
}

// deliveries returns every delivery so far, in the order recorded.
func (r *invokeRecorder) deliveries() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.order)
}

// buildBinary builds the esmd binary for a test.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "esmd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// startBinary runs the esmd binary's serve and returns the process and its
// API address. It inherits the test's environment (testenv aims stray AWS
// calls at a closed loopback port) with static credentials.
func startBinary(t *testing.T, bin string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	return startCommand(t, bin, "serve", args...)
}

// startCommand runs an esmd command that serves the API (serve, or run
// with --addr) as startBinary does.
func startCommand(t *testing.T, bin, command string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{command, "--addr", "127.0.0.1:0", "--log-format", "json"}, args...)...)
	return cmd, startListening(t, cmd)
}

// startListening starts cmd, an esmd command that serves the API, and
// returns the API address it prints.
func startListening(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test", "AWS_REGION=us-east-1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	sc := bufio.NewScanner(stderr)
	re := regexp.MustCompile(`"addr":"http://(127\.0\.0\.1:\d+)"`)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			go func() { _, _ = io.Copy(io.Discard, stderr) }()
			return m[1]
		}
	}
	t.Fatal("esmd printed no listening line")
	return ""
}

// TestSIGTERMShutsDownGracefully runs the real binary.
func TestSIGTERMShutsDownGracefully(t *testing.T) {
	cmd, addr := startBinary(t, buildBinary(t), "--data-dir", t.TempDir(), "--function-check", "never")
	if _, err := client(addr).ListEventSourceMappings(context.Background(), &lambda.ListEventSourceMappingsInput{}); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("still running 15s after SIGTERM")
	}
}
