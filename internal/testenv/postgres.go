package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgreSQLBin is where Debian's postgresql-15 package installs the
// server (scripts/install-test-deps.sh installs it).
const PostgreSQLBin = "/usr/lib/postgresql/15/bin"

var postgres once[string]

// PostgreSQL returns the URL of a PostgreSQL 15 server shared by the test
// package: Debian's binaries run as a plain process (never the system
// service) on 127.0.0.1 with a data directory of its own, trust
// authentication for user postgres, and fsync off. Most tests want a
// database of their own: PostgreSQLDatabase.
//
// PostgreSQL refuses to run as root: as root the server runs as the
// postgres user the package created (os/exec credentials, so that it still
// dies with the test binary); as anyone else it runs as that user.
func PostgreSQL(t testing.TB) string {
	t.Helper()
	return postgres.get(t, startPostgreSQL)
}

// PostgreSQLDatabase creates an empty database on the package's server
// and returns its URL; the database is dropped when the test ends.
func PostgreSQLDatabase(t testing.TB) string {
	t.Helper()
	base := PostgreSQL(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "t_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := pgExec(ctx, base, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := pgExec(ctx, base, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("testenv: %v", err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

func pgExec(ctx context.Context, url, sql string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("postgres: %s: %w", sql, err)
	}
	return nil
}

func startPostgreSQL() (string, error) {
	postgresBin := filepath.Join(PostgreSQLBin, "postgres")
	if _, err := os.Stat(postgresBin); err != nil {
		return "", fmt.Errorf("PostgreSQL 15 is not installed (%s): %s", postgresBin, installHint)
	}
	cred, err := postgresCredential()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "esmd-testenv-pg-*")
	if err != nil {
		return "", err
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			os.RemoveAll(dir)
			return "", err
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(PostgreSQLBin, "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
	initdb.Dir = dir
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("initdb: %v\n%s", err, out)
	}
	port, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	cmd := exec.Command(postgresBin, "-D", data, "-p", strconv.Itoa(port), "-k", dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
		"-c", "full_page_writes=off", "-c", "max_connections=200")
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	dsn := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	p, err := startProc("postgres", cmd)
	if err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	ready := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return err
		}
		return conn.Close(ctx)
	}
	if err := waitReady(p, "postgres", 30*time.Second, ready); err != nil {
		p.stop()
		os.RemoveAll(dir)
		return "", err
	}
	register(func() { p.stop(); os.RemoveAll(dir) })
	return dsn, nil
}

// postgresCredential returns the credential the server runs with: the
// postgres user's when the tests run as root, else nil (the current user).
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL does not run as root and there is no postgres user (%v): %s", err, installHint)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("postgres user: uid %q gid %q", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}
