package api

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// serveLimited runs h behind a ConnLimiter of max connections with the
// given timeouts and returns its address.
func serveLimited(t *testing.T, h http.Handler, max int, headerTimeout, readTimeout, idle time.Duration) string {
	t.Helper()
	lim := NewConnLimiter(max)
	srv := NewServer(h, lim, 10*time.Second, nil)
	srv.ReadHeaderTimeout, srv.ReadTimeout, srv.IdleTimeout = headerTimeout, readTimeout, idle
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { srv.Serve(lim.Listener(ln)); close(done) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return ln.Addr().String()
}

func okHandler(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	w.Write([]byte("ok"))
}

// get sends one request on a new connection and reports its status.
func get(addr string) error {
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return errors.New(resp.Status)
	}
	return nil
}

// TestServerCutsAbusiveConnections opens more slowloris, slow-body, idle
// and silent connections than the server holds: the server closes every
// one of them, and the API answers again once they are gone.
func TestServerCutsAbusiveConnections(t *testing.T) {
	addr := serveLimited(t, http.HandlerFunc(okHandler), 4, 200*time.Millisecond, 400*time.Millisecond, 200*time.Millisecond)
	kinds := []struct {
		name  string
		start func(c net.Conn) error
	}{
		{"slowloris headers", func(c net.Conn) error {
			_, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
			return err
		}},
		{"slow body", func(c net.Conn) error {
			_, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\n\r\n{\"a\":")
			return err
		}},
		{"idle keep-alive", func(c net.Conn) error {
			if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); err != nil {
				return err
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err == nil {
				resp.Body.Close()
			}
			return err
		}},
		{"silent", func(net.Conn) error { return nil }},
	}
	var conns []net.Conn
	for _, k := range kinds {
		for range 4 {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// The connections beyond the limit wait in the backlog: their
			// requests are sent but not yet read.
			go k.start(c)
			conns = append(conns, c)
		}
	}
	for i, c := range conns {
		// The server closes the connection: a read ends with EOF or a
		// reset, not with this test's own deadline.
		c.SetReadDeadline(time.Now().Add(time.Minute))
		_, err := io.Copy(io.Discard, c)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("%s connection %d still open after a minute", kinds[i/4].name, i%4)
		}
	}
	if err := get(addr); err != nil {
		t.Fatalf("API after the abuse: %v", err)
	}
}

// TestIdleConnectionsMakeRoom: with every slot taken by idle keep-alive
// connections, a new client is still answered: the limiter closes the
// connection idle the longest instead of waiting for its IdleTimeout.
func TestIdleConnectionsMakeRoom(t *testing.T) {
	addr := serveLimited(t, http.HandlerFunc(okHandler), 2, time.Minute, time.Minute, time.Hour)
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	for range 3 {
		if err := get(addr); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSilentConnectionsMakeRoom: with every slot taken by connections that
// never finish their request headers (silent, or a slowloris), a new client
// is still answered: the limiter closes the one waiting the longest instead
// of leaving the API unreachable until ReadHeaderTimeout cuts them, which an
// attacker that reconnects at once would keep it for good.
func TestSilentConnectionsMakeRoom(t *testing.T) {
	addr := serveLimited(t, http.HandlerFunc(okHandler), 2, time.Hour, time.Hour, time.Hour)
	for i := range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if i == 1 {
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
		}
	}
	for range 3 {
		if err := get(addr); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBodySlotsBoundBufferedBodies: with every body slot held by a slow
// sender, a request without a body is still answered, and a body waits
// for a slot instead of being buffered.
func TestBodySlotsBoundBufferedBodies(t *testing.T) {
	entered := make(chan struct{}, 8)
	h := Protect(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		okHandler(w, r)
	}), Policy{MaxBodies: 2})
	addr := serveLimited(t, h, 16, time.Minute, time.Minute, time.Minute)
	var slow []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n{")
		slow = append(slow, c)
	}
	if err := get(addr); err != nil {
		t.Fatalf("GET while bodies are slow: %v", err)
	}
	<-entered // the GET
	// Finishing the bodies lets all three through, two slots at a time.
	for _, c := range slow {
		io.WriteString(c, strings.Repeat(" ", 8)+"}")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for range 3 {
		select {
		case <-entered:
		case <-ctx.Done():
			t.Fatal("slow bodies never reached the handler")
		}
	}
}
