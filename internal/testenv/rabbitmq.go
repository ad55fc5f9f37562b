package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// RabbitMQServer is the rabbitmq-server binary Debian's package installs.
const RabbitMQServer = "/usr/lib/rabbitmq/bin/rabbitmq-server"

// RabbitMQ test users and virtual hosts, created at boot from a definitions
// file so no rabbitmqctl round trip (0.5-1 s each) is needed.
const (
	RabbitMQUser     = "esmd"
	RabbitMQPassword = "esmd-secret"
	// RabbitMQVHost is a second virtual host besides "/".
	RabbitMQVHost = "esmd-vh"
)

// RabbitMQBroker is a rabbitmq-server started by RabbitMQ(t): a plain
// process on 127.0.0.1 with its own directories, epmd and ports.
type RabbitMQBroker struct {
	// Addr is the AMQP listener, 127.0.0.1:<port>.
	Addr string
	// TLSAddr is the AMQPS listener; its certificate (for 127.0.0.1 and
	// localhost) is signed by CA.
	TLSAddr string
	// CA is the PEM certificate of the CA that signed the TLS listener's.
	CA []byte

	dir  string
	env  []string
	node string

	mu   sync.Mutex
	proc *proc
}

var rabbit once[*RabbitMQBroker]

// RabbitMQ returns a RabbitMQ broker shared by the test package (started on
// the first call, about 4 s, and stopped by Main). User RabbitMQUser with
// password RabbitMQPassword, and guest/guest, may do anything in the
// virtual hosts "/" and RabbitMQVHost.
func RabbitMQ(t testing.TB) *RabbitMQBroker {
	t.Helper()
	return rabbit.get(t, startRabbitMQ)
}

// URL returns the amqp:// URL of a virtual host with the test user's
// credentials.
func (r *RabbitMQBroker) URL(vhost string) string {
	// The vhost is the path's one segment, escaped: "/" is "%2F".
	return "amqp://" + url.UserPassword(RabbitMQUser, RabbitMQPassword).String() + "@" + r.Addr + "/" + url.PathEscape(vhost)
}

// Dial connects to a virtual host as the test user.
func (r *RabbitMQBroker) Dial(t testing.TB, vhost string) *amqp.Connection {
	t.Helper()
	c, err := amqp.Dial(r.URL(vhost))
	if err != nil {
		t.Fatalf("testenv: dial rabbitmq: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Restart stops the broker gracefully and starts it again on the same ports
// with the same data: durable queues keep their persistent messages, and
// every client connection is closed.
func (r *RabbitMQBroker) Restart(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.proc.stopWithin(20 * time.Second)
	if err := r.start(); err != nil {
		t.Fatalf("testenv: restart rabbitmq: %v", err)
	}
}

// Stop stops the broker (gracefully); Start starts it again. Tests use them
// to hold the broker down for a while.
func (r *RabbitMQBroker) Stop(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.proc.stopWithin(20 * time.Second)
}

// Start starts a broker Stop stopped.
func (r *RabbitMQBroker) Start(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.proc.exited() {
		return
	}
	if err := r.start(); err != nil {
		t.Fatalf("testenv: start rabbitmq: %v", err)
	}
}

// Ctl runs rabbitmqctl against the broker and returns its output.
func (r *RabbitMQBroker) Ctl(t testing.TB, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(filepath.Dir(RabbitMQServer), "rabbitmqctl"), append([]string{"-n", r.node}, args...)...)
	cmd.Env = r.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("testenv: rabbitmqctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func startRabbitMQ() (*RabbitMQBroker, error) {
	if _, err := os.Stat(RabbitMQServer); err != nil {
		return nil, fmt.Errorf("rabbitmq-server is not installed (%s): %s", RabbitMQServer, installHint)
	}
	epmdBin, err := exec.LookPath("epmd")
	if err != nil {
		return nil, fmt.Errorf("epmd (Erlang) is not on PATH: %s", installHint)
	}
	dir, err := os.MkdirTemp("", "esmd-rabbitmq-*")
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(dir)
		}
	}()
	var ports [4]int
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return nil, err
		}
	}
	amqpPort, tlsPort, distPort, epmdPort := ports[0], ports[1], ports[2], ports[3]
	for _, d := range []string{"mnesia", "log", "home"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	ca, err := writeTLSFiles(dir)
	if err != nil {
		return nil, fmt.Errorf("rabbitmq TLS certificates: %w", err)
	}
	defs, err := rabbitDefinitions()
	if err != nil {
		return nil, err
	}
	files := map[string]string{
		"rabbitmq.conf": strings.Join([]string{
			fmt.Sprintf("listeners.tcp.default = 127.0.0.1:%d", amqpPort),
			fmt.Sprintf("listeners.ssl.default = 127.0.0.1:%d", tlsPort),
			"ssl_options.cacertfile = " + filepath.Join(dir, "ca.pem"),
			"ssl_options.certfile = " + filepath.Join(dir, "server.pem"),
			"ssl_options.keyfile = " + filepath.Join(dir, "server.key"),
			"ssl_options.verify = verify_none",
			"ssl_options.fail_if_no_peer_cert = false",
			"loopback_users.guest = true",
			"log.console = true",
			"log.console.level = warning",
			"log.file = false",
			// Test machines can be short of disk; a broker under its disk
			// alarm blocks publishers and every test would hang.
			"disk_free_limit.absolute = 1MB",
			"load_definitions = " + filepath.Join(dir, "definitions.json"),
		}, "\n") + "\n",
		"enabled_plugins":  "[].\n",
		"definitions.json": defs,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			return nil, err
		}
	}
	node := fmt.Sprintf("esmd-%d@localhost", amqpPort)
	// Everything on loopback: AMQP and AMQPS (listeners above), the Erlang
	// distribution port (inet_dist_use_interface) and our own epmd
	// (ERL_EPMD_ADDRESS, on a port of its own so that test packages
	// running at once never share one, and so that no epmd daemon outlives
	// the tests: rabbit finds ours running and starts none).
	loopbackDist := "-kernel inet_dist_use_interface {127,0,0,1}"
	env := append(os.Environ(),
		"HOME="+filepath.Join(dir, "home"), // .erlang.cookie, shared by the server and rabbitmqctl
		"RABBITMQ_CONF_ENV_FILE=/dev/null", // ignore /etc/rabbitmq/rabbitmq-env.conf
		"RABBITMQ_NODENAME="+node,
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		fmt.Sprintf("RABBITMQ_NODE_PORT=%d", amqpPort),
		fmt.Sprintf("RABBITMQ_DIST_PORT=%d", distPort),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(dir, "rabbitmq"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(dir, "enabled_plugins"),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(dir, "log"),
		"RABBITMQ_PID_FILE="+filepath.Join(dir, "rabbit.pid"),
		"ERL_EPMD_ADDRESS=127.0.0.1",
		fmt.Sprintf("ERL_EPMD_PORT=%d", epmdPort),
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="+loopbackDist,
		// The script then execs the Erlang VM instead of running it as a
		// child: the VM is our direct child, so it gets SIGTERM straight
		// (a clean shutdown) and is killed with the test binary
		// (startProc's Pdeathsig) should the tests die without stopping it.
		"RUNNING_UNDER_SYSTEMD=true",
		"RABBITMQ_CTL_ERL_ARGS="+loopbackDist,
	)
	epmdCmd := exec.Command(epmdBin, "-port", fmt.Sprint(epmdPort), "-address", "127.0.0.1")
	epmdCmd.Env = env
	epmd, err := startProc("epmd", epmdCmd)
	if err != nil {
		return nil, err
	}
	if err := waitReady(epmd, "epmd", 5*time.Second, tcpReady(fmt.Sprintf("127.0.0.1:%d", epmdPort))); err != nil {
		epmd.stop()
		return nil, err
	}
	r := &RabbitMQBroker{
		Addr:    fmt.Sprintf("127.0.0.1:%d", amqpPort),
		TLSAddr: fmt.Sprintf("127.0.0.1:%d", tlsPort),
		CA:      ca,
		dir:     dir,
		env:     env,
		node:    node,
	}
	if err := r.start(); err != nil {
		epmd.stop()
		return nil, err
	}
	ok = true
	register(func() {
		r.mu.Lock()
		r.proc.stopWithin(10 * time.Second)
		r.mu.Unlock()
		epmd.stop()
		os.RemoveAll(dir)
	})
	return r, nil
}

// start starts the server process and waits until the test user can open
// a connection (the AMQP port opens at the end of the boot, after the
// definitions are loaded).
func (r *RabbitMQBroker) start() error {
	cmd := exec.Command(RabbitMQServer)
	cmd.Env = r.env
	cmd.Dir = r.dir
	p, err := startProc("rabbitmq", cmd)
	if err != nil {
		return err
	}
	err = waitReady(p, "rabbitmq-server", 60*time.Second, func() error {
		c, err := amqp.DialConfig(r.URL(RabbitMQVHost), amqp.Config{Dial: amqp.DefaultDial(200 * time.Millisecond)})
		if err != nil {
			return err
		}
		return c.Close()
	})
	if err != nil {
		p.stop()
		return err
	}
	r.proc = p
	return nil
}

// stopWithin stops a process group with SIGTERM, waiting up to grace
// before SIGKILL. rabbitmq-server's script forwards SIGTERM to the node,
// which then shuts down cleanly (about 3 s), writing its queues to disk.
func (p *proc) stopWithin(grace time.Duration) {
	if p == nil {
		return
	}
	pid := p.cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
	}
	p.stop()
}

// rabbitDefinitions returns the definitions file that creates the test
// users, virtual hosts and permissions at boot.
func rabbitDefinitions() (string, error) {
	type user struct {
		Name          string   `json:"name"`
		PasswordHash  string   `json:"password_hash"`
		HashAlgorithm string   `json:"hashing_algorithm"`
		Tags          []string `json:"tags"`
	}
	type vhost struct {
		Name string `json:"name"`
	}
	type perm struct {
		User      string `json:"user"`
		VHost     string `json:"vhost"`
		Configure string `json:"configure"`
		Write     string `json:"write"`
		Read      string `json:"read"`
	}
	var defs struct {
		Users       []user  `json:"users"`
		VHosts      []vhost `json:"vhosts"`
		Permissions []perm  `json:"permissions"`
	}
	for _, u := range [][2]string{{RabbitMQUser, RabbitMQPassword}, {"guest", "guest"}} {
		h, err := rabbitPasswordHash(u[1])
		if err != nil {
			return "", err
		}
		defs.Users = append(defs.Users, user{u[0], h, "rabbit_password_hashing_sha256", []string{"administrator"}})
		for _, vh := range []string{"/", RabbitMQVHost} {
			defs.Permissions = append(defs.Permissions, perm{u[0], vh, ".*", ".*", ".*"})
		}
	}
	defs.VHosts = []vhost{{"/"}, {RabbitMQVHost}}
	b, err := json.Marshal(defs)
	return string(b), err
}

// rabbitPasswordHash is RabbitMQ's rabbit_password_hashing_sha256:
// base64(salt + sha256(salt + password)) with a 4-byte salt.
func rabbitPasswordHash(password string) (string, error) {
	salt := make([]byte, 4)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	sum := sha256.Sum256(append(append([]byte{}, salt...), password...))
	return base64.StdEncoding.EncodeToString(append(salt, sum[:]...)), nil
}

// writeTLSFiles writes a CA and a server certificate for 127.0.0.1 and
// localhost into dir (ca.pem, server.pem, server.key) and returns the CA
// certificate in PEM.
func writeTLSFiles(dir string) ([]byte, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "esmd test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	files := map[string][]byte{
		"ca.pem":     caPEM,
		"server.pem": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		"server.key": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return nil, err
		}
	}
	return caPEM, nil
}
