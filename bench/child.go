package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/esmd/esmd/esm"
)

// child is the system under test of one round, a process: `esmd run -f`
// with the round's mapping, or `esmd bench --raw-child` with a RawSpec.
type child struct {
	cmd     *exec.Cmd
	started time.Time
	exited  chan struct{}
	err     error  // the exit error, once exited is closed
	stderr  *tail  // the last of what it wrote on stderr
	usage   *usage // its resource use, once exited is closed
	// hwm is the largest VmHWM (peak RSS) read from /proc while it ran.
	hwm atomic.Int64
}

// usage is what wait4 tells of a child.
type usage struct {
	CPU     time.Duration
	PeakRSS int64 // bytes
}

// startEsmd runs `esmd run -f` on mapping in dir, invoking the function at
// lambda, with the target's flags.
func startEsmd(cfg *Config, dir string, mapping *esm.Config, lambda string, flags, env []string) (*child, error) {
	js, err := json.Marshal(mapping)
	if err != nil {
		return nil, err
	}
	file := filepath.Join(dir, "mapping.json")
	if err := os.WriteFile(file, js, 0o600); err != nil {
		return nil, err
	}
	args := []string{"run", "-f", file, "--data-dir", filepath.Join(dir, "data"),
		"--lambda-endpoint", lambda, "--invoke-mode", cfg.InvokeMode,
		"--function-check", "never", "--log-level", "warn"}
	args = append(append(args, flags...), cfg.ServeArgs...)
	return startChild(cfg.Exe, args, nil, env)
}

// startRaw runs the raw loop of spec, with env added to its environment.
func startRaw(cfg *Config, spec *RawSpec, env []string) (*child, error) {
	js, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	return startChild(cfg.Exe, []string{"bench", "--raw-child"}, js, env)
}

func startChild(exe string, args []string, stdin []byte, env []string) (*child, error) {
	c := &child{exited: make(chan struct{}), stderr: &tail{max: 8 << 10}}
	c.cmd = exec.Command(exe, args...)
	c.cmd.Env = append(childEnv(), env...)
	c.cmd.Stdin = bytes.NewReader(stdin)
	c.cmd.Stdout = c.stderr
	c.cmd.Stderr = c.stderr
	c.started = time.Now()
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", exe, err)
	}
	sampled, reaped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		c.sampleHWM(reaped)
	}()
	go func() {
		c.err = c.cmd.Wait()
		close(reaped)
		<-sampled
		c.usage = rusageOf(c.cmd.ProcessState)
		if h := c.hwm.Load(); h > 0 {
			// wait4's ru_maxrss of a child started with vfork and exec
			// includes the parent's RSS at the exec (Linux carries the
			// old memory's high-water mark over): the bench's own RSS,
			// which holds the in-process broker's records. /proc's
			// VmHWM is the child's own.
			c.usage.PeakRSS = h
		}
		close(c.exited)
	}()
	return c, nil
}

// sampleHWM reads the child's VmHWM every 100 ms until it exits (an
// exited child has none) or reaped is closed (its PID may then be
// another process's); without /proc nothing is read.
func (c *child) sampleHWM(reaped <-chan struct{}) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		h, err := procStatus(c.cmd.Process.Pid, "VmHWM:")
		if err != nil {
			return
		}
		select {
		case <-reaped:
			return
		default:
		}
		if h > c.hwm.Load() {
			c.hwm.Store(h)
		}
		select {
		case <-tick.C:
		case <-reaped:
			return
		}
	}
}

// childEnv is the environment of children: the bench's, with dummy
// credentials and a region when none are set (the bench's endpoint
// accepts any signature) and no instance-metadata lookups.
func childEnv() []string {
	env := os.Environ()
	set := func(k, v string) {
		if os.Getenv(k) == "" {
			env = append(env, k+"="+v)
		}
	}
	if os.Getenv("AWS_PROFILE") == "" {
		set("AWS_ACCESS_KEY_ID", "bench")
		set("AWS_SECRET_ACCESS_KEY", "bench")
	}
	if os.Getenv("AWS_DEFAULT_REGION") == "" {
		set("AWS_REGION", "us-east-1")
	}
	set("AWS_EC2_METADATA_DISABLED", "true")
	return env
}

// stop asks the child to stop (SIGTERM: esmd drains and acknowledges),
// kills it after grace, and waits.
func (c *child) stop(grace time.Duration) error {
	select {
	case <-c.exited:
	default:
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.exited:
		case <-time.After(grace):
			_ = c.cmd.Process.Kill()
			<-c.exited
		}
	}
	if c.err != nil {
		var ee *exec.ExitError
		if errors.As(c.err, &ee) && ee.Sys().(syscall.WaitStatus).Signaled() {
			return fmt.Errorf("%s: killed after %v: %s", filepath.Base(c.cmd.Path), grace, c.stderr)
		}
		return fmt.Errorf("%s: %w: %s", filepath.Base(c.cmd.Path), c.err, c.stderr)
	}
	return nil
}

// done is closed when the child exited.
func (c *child) done() <-chan struct{} { return c.exited }

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}
