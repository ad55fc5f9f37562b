package kafka

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esmd/esmd/internal/testenv"
)

// lanes returns the partitions p owns, sorted.
func (p *Poller) lanes() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for l := range p.owned {
		out = append(out, l)
	}
	slices.Sort(out)
	return out
}

// cutter dials the brokers for one client and can cut it off from them
// for good, as a SIGKILL does: no LeaveGroup, no heartbeat.
type cutter struct {
	mu    sync.Mutex
	cut   bool
	conns []net.Conn
}

func (c *cutter) dial(ctx context.Context, network, host string) (net.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cut {
		return nil, errors.New("cut off")
	}
	conn, err := (&net.Dialer{}).DialContext(ctx, network, host)
	if err == nil {
		c.conns = append(c.conns, conn)
	}
	return conn, err
}

// crash cuts p off from the brokers and stops its goroutines; its client
// is closed with the test.
func (p *Poller) crash(t *testing.T, c *cutter) {
	c.mu.Lock()
	c.cut = true
	for _, conn := range c.conns {
		conn.Close()
	}
	c.mu.Unlock()
	p.mu.Lock()
	p.closing = true
	p.mu.Unlock()
	close(p.stop)
	p.wg.Wait()
	t.Cleanup(p.cl.Close)
}

// consume polls p and finishes every record until the test ends.
func consume(t *testing.T, p *Poller) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			recs, err := p.Poll(ctx)
			if err != nil {
				return
			}
			_ = p.Done(ctx, recs)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// TestStaticMembership: with instance ids, a member that comes back after a
// crash takes its partition back at once, and one that closes hands its
// partition over at once. The group's session timeout is a minute, longer
// than the test waits: a dynamic member would be waited for.
func TestStaticMembership(t *testing.T) {
	s := seeds(t)
	topic := newTopic(t, s, 2)
	cfg := func(id string, opts ...kgo.Opt) Config {
		return Config{Seeds: s, Topics: []string{topic}, Group: topic + ".group", InstanceID: id,
			ClientOpts: append([]kgo.Opt{kgo.SessionTimeout(time.Minute)}, opts...)}
	}
	owns := func(p *Poller, want int) func(context.Context) error {
		return func(context.Context) error {
			if got := p.lanes(); len(got) != want {
				return fmt.Errorf("owns %v, want %d partitions", got, want)
			}
			return nil
		}
	}
	cut := &cutter{}
	a := open(t, cfg("a", kgo.Dialer(cut.dial)))
	consume(t, a)
	b := open(t, cfg("b"))
	consume(t, b)
	defer b.Close()
	testenv.Eventually(t, 20*time.Second, owns(a, 1))
	testenv.Eventually(t, 20*time.Second, owns(b, 1))
	was := a.lanes()

	a.crash(t, cut)
	again := open(t, cfg("a"))
	consume(t, again)
	testenv.Eventually(t, 20*time.Second, owns(again, 1))
	if got := again.lanes(); !slices.Equal(got, was) {
		t.Errorf("the member that came back owns %v, it owned %v", got, was)
	}

	if err := again.Close(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, owns(b, 2))
}
