package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// KinesisLocalVersion is the npm kinesis-local (kinesis-mock compiled for
// Node) that scripts/install-test-deps.sh installs. It implements
// resharding with ChildShards, MillisBehindLatest and ShardFilter, which
// kinesalite fakes (measured against both servers).
const KinesisLocalVersion = "0.6.2"

var kinesisLocal once[string]

// Kinesis returns the endpoint URL (http://127.0.0.1:<port>) of a
// kinesis-local server shared by the test package (account 000000000000,
// us-east-1). Streams become ACTIVE about 0.1 s after CreateStream.
func Kinesis(t testing.TB) string {
	t.Helper()
	return kinesisLocal.get(t, startKinesisLocal)
}

func startKinesisLocal() (string, error) {
	dir := filepath.Join(CacheDir(), "kinesis")
	kl := filepath.Join(dir, "node_modules", "kinesis-local")
	if _, err := os.Stat(filepath.Join(kl, "main.js")); err != nil {
		return "", fmt.Errorf("kinesis-local %s is not installed in %s: %s", KinesisLocalVersion, dir, installHint)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return "", fmt.Errorf("node is not on PATH (kinesis-local needs Node >= 20): %s", installHint)
	}
	loop := filepath.Join(dir, "loopback.js")
	if err := writeFileAtomic(loop, loopbackJS); err != nil {
		return "", err
	}
	port, err := freePort()
	if err != nil {
		return "", err
	}
	tlsPort, err := freePort()
	if err != nil {
		return "", err
	}
	cmd := exec.Command(node, "-r", loop, filepath.Join(kl, "main.js"))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"KINESIS_MOCK_CERT_PATH="+filepath.Join(kl, "server.json"),
		fmt.Sprintf("KINESIS_MOCK_PLAIN_PORT=%d", port),
		fmt.Sprintf("KINESIS_MOCK_TLS_PORT=%d", tlsPort),
		"CREATE_STREAM_DURATION=100ms", "DELETE_STREAM_DURATION=100ms",
		"SPLIT_SHARD_DURATION=100ms", "MERGE_SHARDS_DURATION=100ms",
		"SHARD_LIMIT=1000", "LOG_LEVEL=WARN", "AWS_ACCOUNT_ID="+AccountID, "AWS_REGION="+Region)
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	if err := launch("kinesis-local", cmd, 30*time.Second, httpOK(url+"/healthcheck")); err != nil {
		return "", err
	}
	return url, nil
}
