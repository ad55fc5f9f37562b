// Command mongotest serves the in-memory MongoDB test server of
// internal/mongotest (a one-node replica set "rs0" with change streams)
// until interrupted, so a driver, a shell or another harness can use it:
//
//	go run ./internal/mongotest/cmd/mongotest --addr 127.0.0.1:27017 --user esmd --password secret
//
// It prints the connection string on stdout. It is a test server: see the
// package documentation of internal/mongotest for what it does not do.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/esmd/esmd/internal/mongotest"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:27017", "TCP address to listen on")
	rs := flag.String("replset", "rs0", "replica set name")
	user := flag.String("user", "", "user name (in the admin database); empty turns authentication off")
	password := flag.String("password", "", "password of --user")
	maxEvents := flag.Int("max-events", 0, "keep at most this many change events (0: no limit)")
	retention := flag.Duration("retention", 0, "keep change events this long (0: no limit)")
	useTLS := flag.Bool("tls", false, "serve TLS with a self-signed certificate, written to --ca-file")
	caFile := flag.String("ca-file", "mongotest-ca.pem", "where --tls writes the certificate clients must trust")
	verbose := flag.Bool("v", false, "log connections closed for protocol errors")
	flag.Parse()
	if flag.NArg() > 0 {
		log.Fatalf("mongotest: unexpected arguments %q", flag.Args())
	}
	if *password != "" && *user == "" {
		log.Fatal("mongotest: --password needs --user")
	}

	opts := mongotest.Options{
		Addr: *addr, ReplicaSet: *rs, Username: *user, Password: *password,
		MaxEvents: *maxEvents, Retention: *retention, TLS: *useTLS,
	}
	if *verbose {
		opts.Logf = log.Printf
	}
	srv, err := mongotest.Start(opts)
	if err != nil {
		log.Fatal(err)
	}
	if *useTLS {
		if err := os.WriteFile(*caFile, srv.CACert(), 0o644); err != nil {
			srv.Close()
			log.Fatalf("mongotest: %v", err)
		}
		fmt.Printf("%s&tlsCAFile=%s\n", srv.URI(), *caFile)
	} else {
		fmt.Println(srv.URI())
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	done := make(chan struct{})
	go func() { srv.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		log.Print("mongotest: close timed out")
	}
}
