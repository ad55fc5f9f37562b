package mongotest

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Options configure a Server. The zero value is a usable test server on
// 127.0.0.1 with a free port, no authentication, no TLS and an unbounded
// event log.
type Options struct {
	// Addr is the TCP address to listen on. Default "127.0.0.1:0" (a free
	// port on the loopback interface).
	Addr string
	// ReplicaSet is the replica set name in hello and in URI. Default "rs0".
	ReplicaSet string
	// Username and Password turn authentication on (SCRAM-SHA-256 and
	// SCRAM-SHA-1, user in the admin database). SetCredentials changes them
	// later. Default: no authentication.
	Username, Password string
	// MaxEvents keeps at most this many change events (the newest). Default
	// 0: no count limit.
	MaxEvents int
	// Retention keeps change events whose cluster time (whole seconds) is
	// within Retention of the clock, like an oplog window. Default 0: no
	// age limit.
	Retention time.Duration
	// TLS serves TLS only, with a self-signed certificate for 127.0.0.1,
	// ::1 and localhost made at Start. Clients trust it through
	// ClientTLSConfig or CACert. Default false.
	TLS bool
	// IdleTimeout closes a connection that sends no message for this long.
	// Default 30 minutes (longer than a driver's idle pooled connection
	// usually lives in a test).
	IdleTimeout time.Duration
	// IOTimeout bounds reading the rest of a message once its first bytes
	// arrived, and writing one reply. Default 30 seconds.
	IOTimeout time.Duration
	// Now is the clock for cluster times, wall times and Retention. Default
	// time.Now.
	Now func() time.Time
	// Logf receives a line for each connection closed because of a protocol
	// error. Default: discard.
	Logf func(format string, args ...any)
}

// Error codes the server returns that tests and callers branch on, with
// mongod's numbers.
const (
	CodeHostUnreachable         = 6
	CodeUnauthorized            = 13
	CodeAuthenticationFailed    = 18
	CodeCursorNotFound          = 43
	CodeCommandNotFound         = 59
	CodeInvalidResumeToken      = 260
	CodeChangeStreamHistoryLost = 286
)

// ResumableChangeStreamError is the error label that makes the driver
// resume a change stream after a failed getMore.
const ResumableChangeStreamError = "ResumableChangeStreamError"

// Server is a running test server. Its methods are safe for concurrent
// use. Close stops it.
type Server struct {
	opts      Options
	ln        net.Listener
	advertise string // host:port in hello, hosts and URI
	uri       string
	clientTLS *tls.Config
	caPEM     []byte

	processID  bson.ObjectID
	electionID bson.ObjectID

	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	connMu     sync.Mutex
	conns      map[*conn]struct{}
	totalConns int
	nextConnID int32

	statsMu  sync.Mutex
	commands map[string]int

	// mu guards everything below: the data, the event log, cursors,
	// credentials and the fail point. Commands hold it while they run,
	// except a getMore waiting for events.
	mu      sync.Mutex
	dbs     map[string]map[string]*collection
	log     eventLog
	cursors map[int64]*cursor
	cred    *credential
	fail    *FailPoint
}

// Start listens on opts.Addr and serves until Close.
func Start(opts Options) (*Server, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.ReplicaSet == "" {
		opts.ReplicaSet = "rs0"
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 30 * time.Minute
	}
	if opts.IOTimeout <= 0 {
		opts.IOTimeout = 30 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if opts.MaxEvents < 0 || opts.Retention < 0 {
		return nil, errors.New("mongotest: MaxEvents and Retention must not be negative")
	}
	if opts.Password != "" && opts.Username == "" {
		return nil, errors.New("mongotest: Password without Username")
	}
	s := &Server{
		opts:       opts,
		processID:  bson.NewObjectID(),
		electionID: bson.NewObjectID(),
		done:       make(chan struct{}),
		conns:      map[*conn]struct{}{},
		commands:   map[string]int{},
		dbs:        map[string]map[string]*collection{},
		cursors:    map[int64]*cursor{},
	}
	s.log.init(opts.Now())
	if opts.Username != "" {
		s.cred = newCredential(opts.Username, opts.Password)
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("mongotest: %w", err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	host := addr.IP.String()
	if addr.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	s.advertise = net.JoinHostPort(host, fmt.Sprint(addr.Port))
	s.uri = "mongodb://" + s.advertise + "/?replicaSet=" + opts.ReplicaSet
	if opts.TLS {
		serverCfg, clientCfg, caPEM, err := selfSignedTLS()
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("mongotest: %w", err)
		}
		ln = tls.NewListener(ln, serverCfg)
		s.clientTLS, s.caPEM = clientCfg, caPEM
		s.uri += "&tls=true"
	}
	s.ln = ln
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// URI returns the connection string,
// mongodb://127.0.0.1:<port>/?replicaSet=rs0 (with &tls=true under
// Options.TLS; the client must still trust ClientTLSConfig). It carries no
// credentials: set them with options.Client().SetAuth.
func (s *Server) URI() string { return s.uri }

// UserURI returns URI with user and password in it (escaped), for
// clients that take only a connection string. The credentials are not
// checked here.
func (s *Server) UserURI(user, password string) string {
	return "mongodb://" + url.UserPassword(user, password).String() + "@" + strings.TrimPrefix(s.uri, "mongodb://")
}

// Addr returns the host:port the server advertises (the listener's, with
// 127.0.0.1 for an unspecified address).
func (s *Server) Addr() string { return s.advertise }

// ReplicaSet returns the replica set name.
func (s *Server) ReplicaSet() string { return s.opts.ReplicaSet }

// ClientTLSConfig returns a TLS configuration that trusts the server's
// certificate, or nil without Options.TLS. Each call returns a new copy.
func (s *Server) ClientTLSConfig() *tls.Config {
	if s.clientTLS == nil {
		return nil
	}
	return s.clientTLS.Clone()
}

// CACert returns the PEM certificate a client must trust under
// Options.TLS (the server's own, self-signed), or nil.
func (s *Server) CACert() []byte { return append([]byte(nil), s.caPEM...) }

// SetCredentials sets the only user (in the admin database) new
// connections must authenticate as; an empty user turns authentication off.
// Connections already authenticated stay so.
func (s *Server) SetCredentials(user, password string) {
	var c *credential
	if user != "" {
		c = newCredential(user, password)
	}
	s.mu.Lock()
	s.cred = c
	s.mu.Unlock()
}

// Stats are counters since Start.
type Stats struct {
	// OpenConns is the number of client connections open now.
	OpenConns int
	// TotalConns is the number of client connections accepted.
	TotalConns int
	// Commands counts the commands received by name (as sent, e.g.
	// "isMaster" and "hello" apart), including failed ones; commands the
	// server does not know count as "(unknown)".
	Commands map[string]int
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.connMu.Lock()
	st := Stats{OpenConns: len(s.conns), TotalConns: s.totalConns}
	s.connMu.Unlock()
	s.statsMu.Lock()
	st.Commands = make(map[string]int, len(s.commands))
	for k, v := range s.commands {
		st.Commands[k] = v
	}
	s.statsMu.Unlock()
	return st
}

// CommandCount returns how many commands named name were received.
func (s *Server) CommandCount(name string) int {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	return s.commands[name]
}

func (s *Server) countCommand(name string) {
	s.statsMu.Lock()
	s.commands[name]++
	s.statsMu.Unlock()
}

// DropConnections closes every client connection now, as a network failure
// would, and returns how many it closed. The server keeps accepting new
// ones.
func (s *Server) DropConnections() int {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	for c := range s.conns {
		c.nc.Close()
	}
	return len(s.conns)
}

// Close stops accepting, closes every connection, wakes every waiting
// getMore and waits for all the server's goroutines to end. It is safe to
// call more than once.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.done)
		err = s.ln.Close()
		s.DropConnections()
		s.wg.Wait()
	})
	return err
}

func (s *Server) closed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *Server) accept() {
	defer s.wg.Done()
	var delay time.Duration
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			if s.closed() {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, errTooManyFiles) {
				// Back off on temporary errors as net/http does.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(delay):
				case <-s.done:
					return
				}
				continue
			}
			s.opts.Logf("mongotest: accept: %v", err)
			return
		}
		delay = 0
		c := &conn{s: s, nc: nc}
		s.connMu.Lock()
		if s.closed() {
			s.connMu.Unlock()
			nc.Close()
			return
		}
		s.nextConnID++
		c.id = s.nextConnID
		s.conns[c] = struct{}{}
		s.totalConns++
		s.wg.Add(1)
		s.connMu.Unlock()
		go c.serve()
	}
}

func (s *Server) removeConn(c *conn) {
	s.connMu.Lock()
	delete(s.conns, c)
	s.connMu.Unlock()
}

// conn is one client connection, served by one goroutine that reads a
// request, runs it and writes its reply.
type conn struct {
	s  *Server
	nc net.Conn
	id int32

	// Authentication state; only the serving goroutine touches it.
	authed bool
	sasl   *scramServer
}

func (c *conn) serve() {
	defer c.s.wg.Done()
	defer c.s.removeConn(c)
	defer c.nc.Close()
	if tc, ok := c.nc.(*tls.Conn); ok {
		// Bound the handshake by IOTimeout, not the idle timeout.
		if err := tc.SetDeadline(time.Now().Add(c.s.opts.IOTimeout)); err != nil {
			return
		}
		if err := tc.Handshake(); err != nil {
			if !c.s.closed() {
				c.s.opts.Logf("mongotest: conn %d: TLS handshake: %v", c.id, err)
			}
			return
		}
	}
	for {
		msg, err := readMessage(c.nc, c.s.opts.IdleTimeout, c.s.opts.IOTimeout)
		if err != nil {
			if !isClosedConn(err) && !c.s.closed() {
				c.s.opts.Logf("mongotest: conn %d: %v", c.id, err)
			}
			return
		}
		req, err := parseMessage(msg)
		if err != nil {
			c.s.opts.Logf("mongotest: conn %d: %v", c.id, err)
			return
		}
		reply, closeConn := c.s.handle(c, req)
		if reply != nil {
			if err := c.nc.SetWriteDeadline(time.Now().Add(c.s.opts.IOTimeout)); err != nil {
				return
			}
			if _, err := c.nc.Write(reply); err != nil {
				return
			}
		}
		if closeConn {
			return
		}
	}
}
