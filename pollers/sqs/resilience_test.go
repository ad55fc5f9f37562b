package sqs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go/middleware"

	"github.com/esmd/esmd/internal/testenv"
)

// proxy is a TCP proxy on 127.0.0.1 in front of fauxqs that a test can cut
// (every connection dropped, the port refusing) and restore on the same
// port: the network failures a poller must ride out.
type proxy struct {
	target string
	addr   string
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
}

func startProxy(t *testing.T, target string) *proxy {
	p := &proxy{target: strings.TrimPrefix(target, "http://"), conns: map[net.Conn]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(func() { p.cut(); p.wg.Wait() })
	return p
}

func (p *proxy) url() string { return "http://" + p.addr }

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c], p.conns[up] = true, true
			p.mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); _, _ = io.Copy(up, c); up.Close() }()
			go func() { defer p.wg.Done(); _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
}

// cut closes the listener and every connection.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]bool{}
}

// restore listens again on the same port.
func (p *proxy) restore(t *testing.T) {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	p.serve(ln)
}

// attempts counts the failed SQS call attempts of a client (the SDK's
// retries included) by operation, and those whose connection was refused:
// what tests wait for to know the client has seen SQS go away.
type attempts struct {
	mu      sync.Mutex
	failed  map[string]int
	refused map[string]int
}

func (a *attempts) middleware(st *middleware.Stack) error {
	return st.Finalize.Add(middleware.FinalizeMiddlewareFunc("countFailedAttempts", func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
		out, md, err := next.HandleFinalize(ctx, in)
		if err != nil {
			op := awsmiddleware.GetOperationName(ctx)
			a.mu.Lock()
			if a.failed == nil {
				a.failed, a.refused = map[string]int{}, map[string]int{}
			}
			a.failed[op]++
			if errors.Is(err, syscall.ECONNREFUSED) {
				a.refused[op]++
			}
			a.mu.Unlock()
		}
		return out, md, err
	}), middleware.After)
}

// counts returns how many attempts of op failed and how many of them were
// refused.
func (a *attempts) counts(op string) (failed, refused int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.failed[op], a.refused[op]
}

// TestNetworkFailure: while SQS is unreachable (connections dropped, port
// refusing) the receivers back off and retry, a Done in progress retries
// its delete, and when the network is back every message is delivered and
// nothing is deleted that was not done.
//
// The queue's visibility timeout is short because a long poll the network
// cut may still take messages on the server side (fauxqs does not notice
// the client went away; SQS has a similar window): they come back after the
// timeout, at least once.
func TestNetworkFailure(t *testing.T) {
	f := newFauxqs(t)
	url, arn := f.queue(t, false, map[string]string{"VisibilityTimeout": "2"})
	px := startProxy(t, aws.ToString(f.cfg.BaseEndpoint))
	cfg := f.cfg.Copy()
	cfg.BaseEndpoint = aws.String(px.url())
	att := &attempts{}
	cfg.APIOptions = append(cfg.APIOptions, att.middleware)
	pf := &fauxqs{cfg: cfg, c: awssqs.NewFromConfig(cfg)}
	p := pf.open(t, mapping(arn, 10))
	defer p.Close()

	var first []string
	for i := range 5 {
		first = append(first, fmt.Sprintf("before-%d", i))
	}
	f.sendBatch(t, url, first)
	recs := pollN(t, p, len(first), 10*time.Second)

	px.cut()
	done := make(chan error, 1)
	go func() { done <- p.Done(context.Background(), recs) }()
	var second []string
	for i := range 5 {
		second = append(second, fmt.Sprintf("during-%d", i))
	}
	f.sendBatch(t, url, second)
	// Wait until the delete and the receives failed a few times (the
	// receives refused); Done must not return meanwhile.
	testenv.Eventually(t, 20*time.Second, func(context.Context) error {
		select {
		case err := <-done:
			t.Fatalf("Done returned while SQS was unreachable: %v", err)
		default:
		}
		del, _ := att.counts("DeleteMessageBatch")
		_, recv := att.counts("ReceiveMessage")
		if del < 3 || recv < 3 {
			return fmt.Errorf("%d failed delete attempts and %d refused receive attempts, want 3 of each", del, recv)
		}
		return nil
	})
	px.restore(t)
	if err := <-done; err != nil {
		t.Fatalf("Done after the network came back: %v", err)
	}
	seen := map[string]bool{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for len(seen) < len(second) {
		got, err := p.Poll(ctx)
		if err != nil {
			t.Fatalf("saw %v of %v after the network came back: %v", seen, second, err)
		}
		for _, r := range got {
			b := decode(t, r).Body
			if strings.HasPrefix(b, "before-") {
				t.Errorf("%s was done (deleted) but delivered again", b)
			}
			seen[b] = true
		}
		if err := p.Done(ctx, got); err != nil {
			t.Fatal(err)
		}
	}
	f.waitEmpty(t, url, 10*time.Second)
}

// ownFauxqs runs a fauxqs of the test's own on a fixed port, so that the
// test can stop and restart it (testenv's is shared by the package and has
// no restart). It uses the files testenv installs and writes.
type ownFauxqs struct {
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

func startOwnFauxqs(t *testing.T, port int) *ownFauxqs {
	t.Helper()
	testenv.FauxQS(t) // installs and writes loopback.js and start-fauxqs.mjs
	dir := filepath.Join(testenv.CacheDir(), "fauxqs")
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, "-r", filepath.Join(dir, "loopback.js"), filepath.Join(dir, "start-fauxqs.mjs"))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), fmt.Sprintf("FAUXQS_PORT=%d", port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &ownFauxqs{port: port, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.done) }()
	t.Cleanup(s.stop)
	testenv.Eventually(t, 20*time.Second, func(context.Context) error {
		select {
		case <-s.done:
			t.Fatal("fauxqs exited during startup")
		default:
		}
		resp, err := http.Get(s.url() + "/health")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("health: %s", resp.Status)
		}
		return nil
	})
	return s
}

func (s *ownFauxqs) url() string { return fmt.Sprintf("http://127.0.0.1:%d", s.port) }

// stop kills fauxqs (its process group) and waits for it.
func (s *ownFauxqs) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
}

// TestSQSRestart: the SQS server goes away and comes back (an emulator
// restart: the queue is lost and created again under the same URL). The
// receivers retry with backoff through the refused connections and the
// NonExistentQueue answers, and messages sent after the restart are
// delivered.
func TestSQSRestart(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	srv := startOwnFauxqs(t, port)
	f := &fauxqs{cfg: testenv.AWSConfig(srv.url())}
	f.c = awssqs.NewFromConfig(f.cfg)
	att := &attempts{} // the poller's
	f.cfg.APIOptions = append(f.cfg.APIOptions, att.middleware)
	name := "restart-queue"
	create := func() string {
		out, err := f.c.CreateQueue(context.Background(), &awssqs.CreateQueueInput{QueueName: &name,
			Attributes: map[string]string{"VisibilityTimeout": "30"}})
		if err != nil {
			t.Fatal(err)
		}
		return *out.QueueUrl
	}
	url := create()
	arn := f.arn(t, url)
	p := f.open(t, mapping(arn, 10))
	defer p.Close()
	f.send(t, url, "", "before")
	recs := pollN(t, p, 1, 10*time.Second)
	if err := p.Done(context.Background(), recs); err != nil {
		t.Fatal(err)
	}

	srv.stop()
	// Receivers now fail (connection refused) and retry: wait until they
	// were refused a few times.
	testenv.EventuallyTrue(t, 20*time.Second, "receives to be refused 3 times", func() bool {
		_, refused := att.counts("ReceiveMessage")
		return refused >= 3
	})
	startOwnFauxqs(t, port) // the cleanup stops it
	if u := create(); u != url {
		t.Fatalf("queue URL changed across the restart: %s, then %s", url, u)
	}
	f.send(t, url, "", "after")
	got := pollN(t, p, 1, 15*time.Second)
	if b := decode(t, got[0]).Body; b != "after" {
		t.Fatalf("got %q after the restart", b)
	}
	if err := p.Done(context.Background(), got); err != nil {
		t.Fatal(err)
	}
	f.waitEmpty(t, url, 5*time.Second)
}
