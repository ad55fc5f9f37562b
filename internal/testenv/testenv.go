package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/twmb/franz-go/pkg/kfake"
)

// Versions installed by scripts/install-test-deps.sh.
const (
	FauxQSVersion = "1.9.2"
	RIEVersion    = "v0.0.0-20261030222936-bef5c4ba774d"
)

// Region and credentials the servers accept.
const (
	Region    = "us-east-1"
	AccountID = "000000000000"
)

var (
	mu       sync.Mutex
	mainUsed bool
	stops    []func()
)

// Main runs the package's tests and then stops every server started
// through testenv. Call it from TestMain.
//
// Tests never reach beyond this machine: Main turns off the EC2 instance
// metadata lookups of the AWS SDK's credential chain and, unless the
// environment already names one, points AWS_ENDPOINT_URL at a closed
// loopback port, so an AWS call a test did not aim at a local server fails
// at once instead of going to AWS. Tests aim at their servers with
// AWS_ENDPOINT_URL_<SERVICE> or explicit endpoints.
func Main(m *testing.M) {
	mu.Lock()
	mainUsed = true
	mu.Unlock()
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	if os.Getenv("AWS_ENDPOINT_URL") == "" {
		os.Setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
	}
	code := m.Run()
	StopAll()
	if code == 0 {
		if leaks := Leaks(5 * time.Second); leaks != "" {
			fmt.Fprintf(os.Stderr, "testenv: goroutines leaked by the tests:\n%s\n", leaks)
			code = 1
		}
	}
	os.Exit(code)
}

// StopAll stops every server started so far (Main calls it).
func StopAll() {
	mu.Lock()
	s := stops
	stops = nil
	mu.Unlock()
	for i := len(s) - 1; i >= 0; i-- {
		s[i]()
	}
}

func register(stop func()) {
	mu.Lock()
	stops = append(stops, stop)
	mu.Unlock()
}

// Skip skips t when ESMD_SKIP_INTEGRATION=1 and fails it when the package
// has no testenv.Main (servers would outlive the tests).
func Skip(t testing.TB) {
	t.Helper()
	if os.Getenv("ESMD_SKIP_INTEGRATION") == "1" {
		t.Skip("ESMD_SKIP_INTEGRATION=1")
	}
	mu.Lock()
	ok := mainUsed
	mu.Unlock()
	if !ok {
		t.Fatal("testenv: add `func TestMain(m *testing.M) { testenv.Main(m) }` to this test package")
	}
}

// RepoRoot returns the module root directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// CacheDir returns $ESMD_TEST_CACHE or <repo>/.cache/testenv.
func CacheDir() string {
	if d := os.Getenv("ESMD_TEST_CACHE"); d != "" {
		return d
	}
	return filepath.Join(RepoRoot(), ".cache", "testenv")
}

const installHint = "run scripts/install-test-deps.sh (or set ESMD_SKIP_INTEGRATION=1 to skip integration tests)"

// AWSConfig returns an SDK config for a local endpoint with static
// credentials and region us-east-1.
func AWSConfig(endpoint string) aws.Config {
	return aws.Config{
		Region:       Region,
		Credentials:  credentials.NewStaticCredentialsProvider("AKIAESMDTEST", "secret", ""),
		BaseEndpoint: aws.String(endpoint),
	}
}

// once is a sync.Once that remembers its result.
type once[T any] struct {
	once sync.Once
	val  T
	err  error
}

func (o *once[T]) get(t testing.TB, start func() (T, error)) T {
	t.Helper()
	Skip(t)
	o.once.Do(func() { o.val, o.err = start() })
	if o.err != nil {
		t.Fatalf("testenv: %v", o.err)
	}
	return o.val
}

// freePort returns a free TCP port on 127.0.0.1.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// proc is a started server process (and its process group).
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

func startProc(name string, cmd *exec.Cmd) (*proc, error) {
	logf, err := os.CreateTemp("", "esmd-testenv-"+name+"-*.log")
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group so Stop kills children too (RIE's bootstrap); and
	// die with the test binary.
	// A Credential the caller set (PostgreSQL runs as its own user) stays.
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid, cmd.SysProcAttr.Pdeathsig = true, syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		logf.Close()
		os.Remove(logf.Name())
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{}), log: logf}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// tail returns the end of the process's log.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log.Name())
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

func (p *proc) stop() {
	pid := p.cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-p.done
	}
	// Children that ignored SIGTERM.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	p.log.Close()
	os.Remove(p.log.Name())
}

// waitReady polls ready until it succeeds, the process exits or the timeout
// passes.
func waitReady(p *proc, name string, timeout time.Duration, ready func() error) error {
	errExited := errors.New("exited")
	err := poll(timeout, PollInterval, func(context.Context) error {
		if p.exited() {
			return permanent{errExited}
		}
		return ready()
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errExited):
		return fmt.Errorf("%s exited during startup:\n%s", name, p.tail())
	}
	return fmt.Errorf("%s not ready after %v: %v\n%s", name, timeout, err, p.tail())
}

func tcpReady(addr string) func() error {
	return func() error {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err
	}
}

// ---- fauxqs ----

const loopbackJS = `const net = require('net'); const orig = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const a0 = args[0];
  if (a0 && typeof a0 === 'object' && !Array.isArray(a0)) {
    if (a0.path === undefined && a0.fd === undefined && a0.handle === undefined && a0._handle === undefined)
      args[0] = Object.assign({}, a0, { host: '127.0.0.1' });
  } else if (typeof a0 === 'number' || (typeof a0 === 'string' && /^\d+$/.test(a0)) || a0 === undefined) {
    if (typeof args[1] === 'string') args[1] = '127.0.0.1'; else args.splice(1, 0, '127.0.0.1');
    if (args[0] === undefined) args[0] = 0;
  }
  return orig.apply(this, args);
};
`

const startFauxqsMJS = `import { startFauxqs } from "fauxqs";
const s = await startFauxqs({ port: Number(process.env.FAUXQS_PORT), logger: false });
console.log("fauxqs ready on", s.port);
`

// writeFileAtomic writes name unless it already has content (several test
// packages may start at once).
func writeFileAtomic(name, content string) error {
	if b, err := os.ReadFile(name); err == nil && string(b) == content {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(name), ".tmp-*")
	if err != nil {
		return err
	}
	if _, err := tmp.WriteString(content); err != nil {
		tmp.Close()
		return err
	}
	tmp.Close()
	return os.Rename(tmp.Name(), name)
}

var fauxqs once[string]

// FauxQS returns the endpoint URL (http://127.0.0.1:<port>) of a fauxqs
// server shared by the test package; it serves SQS, SNS and S3 (path-style)
// for account 000000000000 in us-east-1.
func FauxQS(t testing.TB) string {
	t.Helper()
	return fauxqs.get(t, startFauxQS)
}

func startFauxQS() (string, error) {
	dir := filepath.Join(CacheDir(), "fauxqs")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "fauxqs", "package.json")); err != nil {
		return "", fmt.Errorf("fauxqs %s is not installed in %s: %s", FauxQSVersion, dir, installHint)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return "", fmt.Errorf("node is not on PATH (fauxqs needs Node >= 20): %s", installHint)
	}
	loop, script := filepath.Join(dir, "loopback.js"), filepath.Join(dir, "start-fauxqs.mjs")
	if err := writeFileAtomic(loop, loopbackJS); err != nil {
		return "", err
	}
	if err := writeFileAtomic(script, startFauxqsMJS); err != nil {
		return "", err
	}
	port, err := freePort()
	if err != nil {
		return "", err
	}
	cmd := exec.Command(node, "-r", loop, script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), fmt.Sprintf("FAUXQS_PORT=%d", port))
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	if err := launch("fauxqs", cmd, 20*time.Second, httpOK(url+"/health")); err != nil {
		return "", err
	}
	return url, nil
}

// launch starts a server process, waits until ready answers nil, and
// registers its stop with Main.
func launch(name string, cmd *exec.Cmd, timeout time.Duration, ready func() error) error {
	p, err := startProc(name, cmd)
	if err != nil {
		return err
	}
	if err := waitReady(p, name, timeout, ready); err != nil {
		p.stop()
		return err
	}
	register(p.stop)
	return nil
}

// httpOK is a readiness check: a GET of url answers 200.
func httpOK(url string) func() error {
	return func() error {
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", url, resp.Status)
		}
		return nil
	}
}

// ---- RIE + testfn ----

// RIEFunctionTimeout is the function timeout of the RIE that RIE(t)
// starts; testfn's "sleep" mode past it gives "Task timed out".
const RIEFunctionTimeout = 2 * time.Second

var rie once[string]

// RIE returns the endpoint URL of an aws-lambda-rie running
// internal/testfn (function name "function", timeout RIEFunctionTimeout),
// shared by the test package. RIE crashes on concurrent invocations:
// invoke it one call at a time (dispatcher.ModeRIE does).
func RIE(t testing.TB) string {
	t.Helper()
	return rie.get(t, startRIE)
}

// BuildTestFn builds internal/testfn as a Linux bootstrap binary into dir.
func BuildTestFn(dir string) (string, error) {
	out := filepath.Join(dir, "bootstrap")
	cmd := exec.Command("go", "build", "-o", out, "./internal/testfn")
	cmd.Dir = RepoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build testfn: %v\n%s", err, b)
	}
	return out, nil
}

func startRIE() (string, error) {
	bin := filepath.Join(CacheDir(), "bin", "aws-lambda-rie")
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("aws-lambda-rie %s is not installed at %s: %s", RIEVersion, bin, installHint)
	}
	dir, err := os.MkdirTemp("", "esmd-testfn-*")
	if err != nil {
		return "", err
	}
	bootstrap, err := BuildTestFn(dir)
	if err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	port, err := freePort()
	if err != nil {
		return "", err
	}
	apiPort, err := freePort()
	if err != nil {
		return "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(bin, "--runtime-interface-emulator-address", addr,
		"--runtime-api-address", fmt.Sprintf("127.0.0.1:%d", apiPort), "--log-level", "warn", bootstrap)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		fmt.Sprintf("AWS_LAMBDA_FUNCTION_TIMEOUT=%d", int(RIEFunctionTimeout/time.Second)),
		"AWS_LAMBDA_FUNCTION_NAME=function", "AWS_REGION="+Region)
	p, err := startProc("rie", cmd)
	if err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	if err := waitReady(p, "aws-lambda-rie", 10*time.Second, tcpReady(addr)); err != nil {
		p.stop()
		os.RemoveAll(dir)
		return "", err
	}
	register(func() { p.stop(); os.RemoveAll(dir) })
	return "http://" + addr, nil
}

// ---- kfake ----

var kafka once[[]string]

// Kafka returns the seed brokers of an in-process kfake cluster (one
// broker, topics auto-created when a client asks) shared by the test
// package.
func Kafka(t testing.TB) []string {
	t.Helper()
	return kafka.get(t, func() ([]string, error) {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(1))
		if err != nil {
			return nil, err
		}
		register(c.Close)
		return c.ListenAddrs(), nil
	})
}
