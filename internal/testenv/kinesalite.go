package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// KinesaliteVersion is the npm kinesalite used for volume (benchmarks):
// about ten times faster than kinesis-local, but its MillisBehindLatest is
// always 0 and GetRecords has no ChildShards (measured against both
// servers). Install: npm install --prefix $ESMD_TEST_CACHE/kinesalite
// kinesalite@3.3.3.
const KinesaliteVersion = "3.3.3"

// KinesaliteShardLimit is the shard limit of the kinesalite Kinesalite
// starts (enough for a 1,000-shard stream).
const KinesaliteShardLimit = 2000

var kinesalite once[string]

// Kinesalite returns the endpoint URL of a kinesalite server shared by the
// test package (in memory; account 000000000000, us-east-1). Streams
// become ACTIVE about 0.5 s after CreateStream.
func Kinesalite(t testing.TB) string {
	t.Helper()
	return kinesalite.get(t, startKinesalite)
}

func startKinesalite() (string, error) {
	dir := filepath.Join(CacheDir(), "kinesalite")
	cli := filepath.Join(dir, "node_modules", "kinesalite", "cli.js")
	if _, err := os.Stat(cli); err != nil {
		return "", fmt.Errorf("kinesalite %s is not installed in %s: npm install --prefix %s kinesalite@%s", KinesaliteVersion, dir, dir, KinesaliteVersion)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return "", fmt.Errorf("node is not on PATH (kinesalite needs Node): %s", installHint)
	}
	loop := filepath.Join(dir, "loopback.js")
	if err := writeFileAtomic(loop, loopbackJS); err != nil {
		return "", err
	}
	port, err := freePort()
	if err != nil {
		return "", err
	}
	cmd := exec.Command(node, "-r", loop, cli, "--port", fmt.Sprint(port), "--shardLimit", fmt.Sprint(KinesaliteShardLimit),
		"--createStreamMs", "50", "--deleteStreamMs", "50", "--updateStreamMs", "50")
	cmd.Dir = dir
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	ready := func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	}
	if err := launch("kinesalite", cmd, 30*time.Second, ready); err != nil {
		return "", err
	}
	return "http://" + addr, nil
}
