package testenv

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
)

func TestMain(m *testing.M) { Main(m) }

// TestActiveMQ: the private broker takes the test user's messages and
// refuses a wrong password; a NACKed message goes to the DLQ after the
// redelivery limit is covered by pollers/activemq.
func TestActiveMQ(t *testing.T) {
	b := ActiveMQ(t)
	c := b.Dial(t)
	if err := c.Send("/queue/testenv", "text/plain", []byte("hi")); err != nil {
		t.Fatal(err)
	}
	sub, err := c.Subscribe("/queue/testenv", stomp.AckClientIndividual)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-sub.C:
		if m.Err != nil || string(m.Body) != "hi" {
			t.Fatalf("got %+v", m)
		}
		if err := c.Ack(m); err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no message")
	}
	if _, err := stomp.Dial("tcp", b.STOMPAddr, stomp.ConnOpt.Login(ActiveMQUser, "wrong")); err == nil {
		t.Fatal("a wrong password was accepted")
	}
}

// TestActiveMQPair: the slave takes over the shared store when the master
// is killed, with the master's persistent messages.
func TestActiveMQPair(t *testing.T) {
	p := ActiveMQPair(t)
	c, err := stomp.Dial("tcp", p[0].STOMPAddr, stomp.ConnOpt.Login(ActiveMQUser, ActiveMQPassword))
	if err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf("kept-%d", time.Now().UnixNano())
	if err := c.Send("/queue/pair", "text/plain", []byte(body), stomp.SendOpt.Header("persistent", "true"), stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
	_ = c.MustDisconnect()
	// The receipt can come before the journal write (KahaDB stores a
	// queue's message concurrently with its dispatch): kill the master only
	// once the message is in the shared journal, or a SIGKILL loses it.
	EventuallyTrue(t, 10*time.Second, "the message in the KahaDB journal", func() bool {
		logs, _ := filepath.Glob(filepath.Join(p[0].data, "kahadb", "*.log"))
		for _, l := range logs {
			if b, err := os.ReadFile(l); err == nil && bytes.Contains(b, []byte(body)) {
				return true
			}
		}
		return false
	})
	p[0].Kill(t)
	p[1].WaitReady(t, 30*time.Second)
	c2 := p[1].Dial(t)
	sub, err := c2.Subscribe("/queue/pair", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-sub.C:
		if m.Err != nil || string(m.Body) != body {
			t.Fatalf("got %+v", m)
		}
	case <-time.After(30 * time.Second):
		// The new master loads the queue from the shared store after its
		// STOMP port answers; on a loaded machine that took over 10 s.
		t.Fatal("the slave does not have the master's message")
	}
	// The old master comes back as the slave.
	p[0].Start(t)
}
