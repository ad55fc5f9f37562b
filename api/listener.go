package api

import (
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Server limits. Each is sized for the Lambda API: small JSON requests,
// answered in well under a second, except when a create looks a function
// or a source up (bounded by their own 10 s timeouts) or a stop drains.
const (
	// ReadHeaderTimeout cuts a connection whose request headers do not
	// arrive in time (slowloris).
	ReadHeaderTimeout = 10 * time.Second
	// ReadTimeout bounds reading a whole request, headers and body: a 1
	// MB body at 35 KB/s still arrives.
	ReadTimeout = 30 * time.Second
	// IdleTimeout closes a keep-alive connection with no request.
	IdleTimeout = 30 * time.Second
	// MaxHeaderBytes bounds the request line and headers.
	MaxHeaderBytes = 64 << 10
	// DefaultMaxConns is the default bound on open API connections.
	DefaultMaxConns = 256
)

// NewServer returns the HTTP server for the API handler h with every
// limit set. writeTimeout bounds a request from the end of its headers to
// the end of its response; it must cover the slowest operation.
func NewServer(h http.Handler, lim *ConnLimiter, writeTimeout time.Duration, log *slog.Logger) *http.Server {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
	}
	if log != nil {
		srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	}
	if lim != nil {
		srv.ConnState = lim.ConnState
	}
	return srv
}

// ConnLimiter bounds the connections a listener holds open. When the
// bound is reached, the connection idle the longest is closed to make
// room; when none is idle (between requests), the one that has waited the
// longest for its request headers (a silent client, a slowloris); when
// every connection is in a request, Accept waits for one to close, and new
// connections wait in the kernel's backlog meanwhile. Every connection is
// cut by the server's timeouts, so waiting is bounded. Without closing
// connections that send nothing, an attacker who keeps --max-connections
// of them open, reconnecting as ReadHeaderTimeout cuts them, would keep
// every client out.
//
// Bounding connections below the process's file limit keeps descriptors
// for the pipelines and the store; should accept still fail for want of
// descriptors (EMFILE), net/http retries with a backoff of up to a second,
// and the API answers again as soon as descriptors are freed.
type ConnLimiter struct {
	slots chan struct{}

	mu sync.Mutex
	// idle are the connections between requests, fresh those accepted
	// whose first request's headers have not all arrived, each with the
	// time it entered that state.
	idle, fresh map[net.Conn]time.Time
}

// NewConnLimiter returns a limiter for max connections.
func NewConnLimiter(max int) *ConnLimiter {
	if max < 1 {
		max = 1
	}
	return &ConnLimiter{slots: make(chan struct{}, max), idle: map[net.Conn]time.Time{}, fresh: map[net.Conn]time.Time{}}
}

// Listener wraps ln so that it holds at most the limiter's connections.
func (l *ConnLimiter) Listener(ln net.Listener) net.Listener {
	return &limitListener{Listener: ln, l: l, done: make(chan struct{})}
}

// ConnState is the http.Server.ConnState hook that tells the limiter which
// connections are idle.
func (l *ConnLimiter) ConnState(c net.Conn, s http.ConnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.idle, c)
	delete(l.fresh, c)
	switch s {
	case http.StateIdle:
		l.idle[c] = time.Now()
	case http.StateNew:
		l.fresh[c] = time.Now()
	}
}

// evictIdle closes the connection idle the longest, else the one that has
// waited the longest for its first request, if any. A request that arrives
// on it at that very moment sees the connection reset, as it would at the
// end of IdleTimeout; the SDKs retry such an error.
func (l *ConnLimiter) evictIdle() {
	l.mu.Lock()
	oldest := oldestOf(l.idle)
	if oldest == nil {
		oldest = oldestOf(l.fresh)
	}
	delete(l.idle, oldest)
	delete(l.fresh, oldest)
	l.mu.Unlock()
	if oldest != nil {
		oldest.Close()
	}
}

// oldestOf returns the connection of conns with the earliest time, or nil.
func oldestOf(conns map[net.Conn]time.Time) net.Conn {
	var oldest net.Conn
	var at time.Time
	for c, t := range conns {
		if oldest == nil || t.Before(at) {
			oldest, at = c, t
		}
	}
	return oldest
}

type limitListener struct {
	net.Listener
	l         *ConnLimiter
	done      chan struct{}
	closeOnce sync.Once
}

// Accept takes a slot for a connection once it has arrived: making room
// before, while no one is connecting, would close a connection (an idle
// one, or one whose request is on its way) for nothing. While it waits for
// a slot, the accepted connection is one descriptor beyond the limit.
func (ln *limitListener) Accept() (net.Conn, error) {
	c, err := ln.Listener.Accept()
	if err != nil {
		return nil, err
	}
	select {
	case ln.l.slots <- struct{}{}:
	default:
		ln.l.evictIdle()
		select {
		case ln.l.slots <- struct{}{}:
		case <-ln.done:
			c.Close()
			return nil, net.ErrClosed
		}
	}
	return &limitConn{Conn: c, release: func() { <-ln.l.slots }}, nil
}

func (ln *limitListener) Close() error {
	ln.closeOnce.Do(func() { close(ln.done) })
	return ln.Listener.Close()
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
