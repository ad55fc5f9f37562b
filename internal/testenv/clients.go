package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// JSLambdaVersion is the npm @aws-sdk/client-lambda the client tests drive
// esmd with. Install: npm install --prefix $ESMD_TEST_CACHE/jssdk
// @aws-sdk/client-lambda@<version> (scripts/install-test-deps.sh).
const JSLambdaVersion = "3.1164.0"

// JSLambdaSDK returns the directory of the installed @aws-sdk/client-lambda
// package (for require()) and fails t when it or node is missing.
func JSLambdaSDK(t testing.TB) string {
	t.Helper()
	Skip(t)
	dir := filepath.Join(CacheDir(), "jssdk", "node_modules", "@aws-sdk", "client-lambda")
	if _, err := os.Stat(filepath.Join(dir, "package.json")); err != nil {
		t.Fatalf("@aws-sdk/client-lambda %s is not installed in %s: %s", JSLambdaVersion, dir, installHint)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node is not on PATH: %s", installHint)
	}
	return dir
}

// AWSCLI returns the path of the AWS CLI (aws on PATH: the machine image's
// pip awscli, or Debian's awscli that scripts/install-test-deps.sh
// installs) and fails t when there is none.
func AWSCLI(t testing.TB) string {
	t.Helper()
	Skip(t)
	p, err := exec.LookPath("aws")
	if err != nil {
		t.Fatal(fmt.Errorf("the AWS CLI (aws) is not on PATH: %s", installHint))
	}
	return p
}
