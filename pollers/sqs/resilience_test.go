package sqs

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
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
	// Let receivers and the delete fail a few times.
	time.Sleep(700 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("Done returned while SQS was unreachable: %v", err)
	default:
	}
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
