package testenv

import (
	"embed"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
)

// ActiveMQJar is the broker jar Debian's activemq package installs.
const ActiveMQJar = "/usr/share/activemq/bin/activemq.jar"

// ActiveMQ test credentials (the only user; anonymous access is refused).
const (
	ActiveMQUser     = "esmd"
	ActiveMQPassword = "esmd-secret"
)

// ActiveMQ's redelivery policy in internal/testenv/activemq/activemq.xml:
// a NACKed message comes back ActiveMQRedeliveries times, ActiveMQRedeliveryDelay
// apart, then goes to ActiveMQDLQ.
const (
	ActiveMQRedeliveries    = 6
	ActiveMQRedeliveryDelay = time.Second
	ActiveMQDLQ             = "ActiveMQ.DLQ"
)

//go:embed activemq/activemq.xml activemq/log4j.properties
var activemqConf embed.FS

// ActiveMQBroker is an ActiveMQ broker started by ActiveMQ(t) or
// ActiveMQPair(t): Debian's jar run as a plain java process on 127.0.0.1
// with its own config, ports and data directory.
type ActiveMQBroker struct {
	// STOMPAddr is the STOMP listener, 127.0.0.1:<port>.
	STOMPAddr string
	// OpenWireAddr is the OpenWire listener (unused by esmd).
	OpenWireAddr string

	name, run, conf, data string
	stompPort, owPort     int

	mu   sync.Mutex
	proc *proc
}

var (
	amq     once[*ActiveMQBroker]
	amqPair once[[2]*ActiveMQBroker]
)

// ActiveMQ returns an ActiveMQ broker shared by the test package (started on
// the first call, about 1.5 s, and stopped by Main). User ActiveMQUser with
// password ActiveMQPassword may do anything.
func ActiveMQ(t testing.TB) *ActiveMQBroker {
	t.Helper()
	return amq.get(t, func() (*ActiveMQBroker, error) {
		dir, err := os.MkdirTemp("", "esmd-activemq-*")
		if err != nil {
			return nil, err
		}
		b, err := newActiveMQ(dir, "a", filepath.Join(dir, "data"), "esmd")
		if err == nil {
			err = b.start(true)
		}
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		register(func() { b.stop(10 * time.Second); os.RemoveAll(dir) })
		return b, nil
	})
}

// ActiveMQPair returns a master and a slave sharing one KahaDB store, as
// Amazon MQ's active/standby brokers (shared by the test package, stopped by
// Main). The first is the master once started; the second waits for the
// store's lock and opens its ports when the master dies.
func ActiveMQPair(t testing.TB) [2]*ActiveMQBroker {
	t.Helper()
	return amqPair.get(t, func() ([2]*ActiveMQBroker, error) {
		var pair [2]*ActiveMQBroker
		dir, err := os.MkdirTemp("", "esmd-activemq-pair-*")
		if err != nil {
			return pair, err
		}
		data := filepath.Join(dir, "data")
		for i, n := range []string{"a", "b"} {
			if pair[i], err = newActiveMQ(dir, n, data, "shared"); err != nil {
				os.RemoveAll(dir)
				return pair, err
			}
		}
		if err := pair[0].start(true); err != nil {
			os.RemoveAll(dir)
			return pair, err
		}
		if err := pair[1].start(false); err != nil {
			pair[0].stop(10 * time.Second)
			os.RemoveAll(dir)
			return pair, err
		}
		register(func() {
			pair[0].stop(10 * time.Second)
			pair[1].stop(10 * time.Second)
			os.RemoveAll(dir)
		})
		return pair, nil
	})
}

func newActiveMQ(dir, sub, data, name string) (*ActiveMQBroker, error) {
	if _, err := os.Stat(ActiveMQJar); err != nil {
		return nil, fmt.Errorf("activemq is not installed (%s): %s", ActiveMQJar, installHint)
	}
	if _, err := exec.LookPath("java"); err != nil {
		return nil, fmt.Errorf("java is not on PATH: %s", installHint)
	}
	b := &ActiveMQBroker{name: name, run: filepath.Join(dir, sub), data: data}
	b.conf = filepath.Join(b.run, "conf")
	if err := os.MkdirAll(b.conf, 0o755); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, err
	}
	for _, f := range []string{"activemq.xml", "log4j.properties"} {
		c, err := activemqConf.ReadFile("activemq/" + f)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(b.conf, f), c, 0o644); err != nil {
			return nil, err
		}
	}
	var err error
	if b.stompPort, err = freePort(); err != nil {
		return nil, err
	}
	if b.owPort, err = freePort(); err != nil {
		return nil, err
	}
	b.STOMPAddr = fmt.Sprintf("127.0.0.1:%d", b.stompPort)
	b.OpenWireAddr = fmt.Sprintf("127.0.0.1:%d", b.owPort)
	return b, nil
}

// start launches the JVM (the command INFRA measured, about 1.5 s to
// ready) and, when wait is set, waits until the test user can CONNECT over
// STOMP.
func (b *ActiveMQBroker) start(wait bool) error {
	cmd := exec.Command("java", "-Xms64m", "-Xmx256m", "-XX:+UseSerialGC",
		"-Dactivemq.home=/usr/share/activemq", "-Dactivemq.base="+b.run,
		"-Dactivemq.conf="+b.conf, "-Dactivemq.data="+b.data, "-Dactivemq.classpath="+b.conf,
		"-Damq.name="+b.name,
		fmt.Sprintf("-Damq.port.openwire=%d", b.owPort), fmt.Sprintf("-Damq.port.stomp=%d", b.stompPort),
		"-Damq.user="+ActiveMQUser, "-Damq.password="+ActiveMQPassword,
		"-jar", ActiveMQJar, "start", "xbean:file:"+filepath.Join(b.conf, "activemq.xml"))
	cmd.Dir = b.run
	p, err := startProc("activemq", cmd)
	if err != nil {
		return err
	}
	if wait {
		if err := waitReady(p, "activemq", 60*time.Second, b.ready); err != nil {
			p.stop()
			return err
		}
	}
	b.proc = p
	return nil
}

func (b *ActiveMQBroker) ready() error {
	nc, err := net.DialTimeout("tcp", b.STOMPAddr, 500*time.Millisecond)
	if err != nil {
		return err
	}
	defer nc.Close()
	if err := nc.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return err
	}
	c, err := stomp.Connect(nc, stomp.ConnOpt.Login(ActiveMQUser, ActiveMQPassword))
	if err != nil {
		return err
	}
	return c.Disconnect()
}

func (b *ActiveMQBroker) stop(grace time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.proc.stopWithin(grace)
}

// Dial connects over STOMP as the test user.
func (b *ActiveMQBroker) Dial(t testing.TB) *stomp.Conn {
	t.Helper()
	c, err := stomp.Dial("tcp", b.STOMPAddr, stomp.ConnOpt.Login(ActiveMQUser, ActiveMQPassword))
	if err != nil {
		t.Fatalf("testenv: dial activemq: %v", err)
	}
	t.Cleanup(func() { _ = c.Disconnect() })
	return c
}

// Restart stops the broker gracefully and starts it again on the same ports
// with the same data: persistent messages survive, connections are closed.
func (b *ActiveMQBroker) Restart(t testing.TB) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.proc.stopWithin(15 * time.Second)
	if err := b.start(true); err != nil {
		t.Fatalf("testenv: restart activemq: %v", err)
	}
}

// Kill kills the broker with SIGKILL (a master's crash: its slave takes
// over); Start starts it again.
func (b *ActiveMQBroker) Kill(t testing.TB) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.proc != nil && !b.proc.exited() {
		_ = syscall.Kill(-b.proc.cmd.Process.Pid, syscall.SIGKILL)
		b.proc.stop()
	}
}

// Stop stops the broker gracefully.
func (b *ActiveMQBroker) Stop(t testing.TB) {
	t.Helper()
	b.stop(15 * time.Second)
}

// Start starts a broker Stop or Kill stopped, without waiting for it to be
// ready (a slave waits for the store's lock); WaitReady waits.
func (b *ActiveMQBroker) Start(t testing.TB) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.proc != nil && !b.proc.exited() {
		return
	}
	if err := b.start(false); err != nil {
		t.Fatalf("testenv: start activemq: %v", err)
	}
}

// WaitReady waits until the broker accepts STOMP connections (a slave:
// until it has taken over).
func (b *ActiveMQBroker) WaitReady(t testing.TB, timeout time.Duration) {
	t.Helper()
	b.mu.Lock()
	p := b.proc
	b.mu.Unlock()
	if err := waitReady(p, "activemq", timeout, b.ready); err != nil {
		t.Fatalf("testenv: %v", err)
	}
}
