package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestProfileAndTraceFromEnv: ESMD_CPUPROFILE and ESMD_TRACE make the
// process write a CPU profile pprof reads and an execution trace.
func TestProfileAndTraceFromEnv(t *testing.T) {
	dir := t.TempDir()
	cpu, tr := filepath.Join(dir, "cpu.pprof"), filepath.Join(dir, "run.trace")
	t.Setenv(profileEnv, cpu)
	t.Setenv(traceEnv, tr)
	var stderr bytes.Buffer
	stop := startProfile(&stderr)
	sum := 0
	for i := range 1 << 20 {
		sum += i % 7
	}
	stop()
	if stderr.Len() > 0 {
		t.Fatalf("stderr: %s (sum %d)", stderr.String(), sum)
	}
	// A profile is a gzipped protocol buffer.
	zr, err := os.ReadFile(cpu)
	if err != nil {
		t.Fatal(err)
	}
	gz, err := gzip.NewReader(bytes.NewReader(zr))
	if err != nil {
		t.Fatalf("CPU profile: %v", err)
	}
	if n, err := io.Copy(io.Discard, gz); err != nil || n == 0 {
		t.Fatalf("CPU profile: %d bytes, %v", n, err)
	}
	b, err := os.ReadFile(tr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("go 1.")) {
		t.Fatalf("trace starts with %q, want the trace header", b[:min(len(b), 16)])
	}
}

// TestProfileUnset: without the variables nothing is written.
func TestProfileUnset(t *testing.T) {
	t.Setenv(profileEnv, "")
	t.Setenv(traceEnv, "")
	var stderr bytes.Buffer
	startProfile(&stderr)()
	if stderr.Len() > 0 {
		t.Fatal(stderr.String())
	}
}
