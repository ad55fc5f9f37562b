package testenv

import (
	"io"
	"net"
	"testing"
)

// Unreachable returns addresses (host:port) at which no server of any
// protocol answers, each failing in its own way: "closed" (nothing
// listens: connection refused), "unresolvable" (a name under .invalid,
// which never resolves), "garbage" (a listener that answers every
// connection with an HTTP error and closes it: an open port of some other
// service) and "silent" (a listener that accepts and never answers: a
// timeout). Tests check that an API caller cannot tell them apart. The
// listeners close with the test.
func Unreachable(t testing.TB) map[string]string {
	t.Helper()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()
	serve := func(handle func(net.Conn)) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		var conns []net.Conn
		go func() {
			defer close(done)
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				conns = append(conns, c)
				go handle(c)
			}
		}()
		t.Cleanup(func() {
			ln.Close()
			<-done
			for _, c := range conns {
				c.Close()
			}
		})
		return ln.Addr().String()
	}
	garbage := serve(func(c net.Conn) {
		_, _ = io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		c.Close()
	})
	silent := serve(func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	return map[string]string{
		"closed":       closedAddr,
		"unresolvable": "esmd-no-such-host.invalid:9092",
		"garbage":      garbage,
		"silent":       silent,
	}
}
