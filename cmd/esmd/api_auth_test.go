package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/esmd/esmd/api"
	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/pollers/memsource"
	"github.com/esmd/esmd/source"
)

const (
	apiKeyID   = "AKIDESMDAPI"
	apiSecret  = "esmd-api-secret"
	kinesisARN = "arn:aws:kinesis:us-east-1:000000000000:stream/auth"
)

func TestServeRefusesAnOpenNonLoopbackAPI(t *testing.T) {
	creds := filepath.Join(t.TempDir(), "credentials")
	os.WriteFile(creds, []byte("[default]\naws_access_key_id=A\naws_secret_access_key=s\n"), 0o600)
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"--addr", "0.0.0.0:9000"}, "--addr 0.0.0.0:9000 is not a loopback address and no --api-credentials are given"},
		{[]string{"--addr", ":9000"}, "not a loopback address"},
		{[]string{"--addr", "[::]:9000"}, "not a loopback address"},
		{[]string{"--addr", "esmd.example.com:9000"}, "not a loopback address"},
		{[]string{"--addr", "0.0.0.0:9000", "--allow-unauthenticated"}, ""},
		{[]string{"--addr", "0.0.0.0:9000", "--api-credentials", creds}, ""},
		{[]string{"--addr", "127.0.0.1:9000"}, ""},
		{[]string{"--addr", "127.9.9.9:9000"}, ""},
		{[]string{"--addr", "localhost:9000"}, ""},
		{[]string{"--addr", "[::1]:9000"}, ""},
		{[]string{"--allowed-origins", "https://console.example.com,http://localhost:3000"}, ""},
		{[]string{"--allowed-origins", "console.example.com"}, `--allowed-origins: "console.example.com" is not an origin`},
		{[]string{"--max-connections", "-1"}, "--max-connections must not be negative"},
		// A wildcard without credentials hands the API to any web page:
		// through DNS rebinding (any Host), or by CORS (any Origin).
		{[]string{"--allowed-hosts", "*"}, "--allowed-hosts * without --api-credentials"},
		{[]string{"--allowed-hosts", "esmd.internal,*", "--addr", "0.0.0.0:9000", "--allow-unauthenticated"}, "--allowed-hosts * without --api-credentials"},
		{[]string{"--allowed-origins", "*"}, "--allowed-origins * without --api-credentials"},
		{[]string{"--allowed-hosts", "*", "--allowed-origins", "*", "--api-credentials", creds}, ""},
		{[]string{"--allowed-hosts", "esmd.internal", "--allowed-origins", "http://localhost:3000"}, ""},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			o := serveFlags(io.Discard)
			if err := parse(o.fs, tc.args); err != nil {
				t.Fatal(err)
			}
			err := o.validate()
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("validate: %v, want %q", err, tc.err)
			}
		})
	}
	// On the command line: exit status 2 and the reason, nothing bound.
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"serve", "--addr", "0.0.0.0:0", "--data-dir", t.TempDir()}, nil, io.Discard, &stderr); code != 2 ||
		!strings.Contains(stderr.String(), "--allow-unauthenticated") {
		t.Errorf("exit %d: %s", code, stderr.String())
	}
}

// memKinesis stands memsource in for the Kinesis poller and its stream
// check in c, and counts the pollers opened.
func memKinesis(c *common) *atomic.Int32 {
	var opened atomic.Int32
	log := memsource.NewLog(1)
	for _, d := range c.sources {
		if d.Source == esm.SourceKinesis {
			d.Check = nil
			d.Open = func(context.Context, *source.Env, *esm.Mapping) (source.Poller, error) {
				opened.Add(1)
				return log.NewPoller(10), nil
			}
		}
	}
	return &opened
}

// TestServePortClashStopsBeforePolling: with the API port taken, serve
// fails before it opens the store, so no enabled mapping starts polling.
func TestServePortClashStopsBeforePolling(t *testing.T) {
	dir := t.TempDir()
	c := newCommon("test", io.Discard, "127.0.0.1:0")
	c.dataDir, c.functionCheck = dir, "never"
	opened := memKinesis(c)
	addr, stop := serveWith(t, c)
	if _, err := client(addr).CreateEventSourceMapping(context.Background(), &lambda.CreateEventSourceMappingInput{
		FunctionName: aws.String("f"), EventSourceArn: aws.String(kinesisARN), StartingPosition: types.EventSourcePositionLatest}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func(context.Context) error {
		if opened.Load() == 0 {
			return errors.New("the enabled mapping has not started")
		}
		return nil
	})
	stop()
	before := opened.Load()

	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	c2 := newCommon("test", io.Discard, taken.Addr().String())
	c2.dataDir, c2.functionCheck = dir, "never"
	c2.sources = c.sources
	if err := c2.validate(); err != nil {
		t.Fatal(err)
	}
	err = serve(context.Background(), c2, c2.logger(io.Discard), nil)
	if err == nil || !strings.Contains(err.Error(), "listen on "+taken.Addr().String()) {
		t.Fatalf("serve with the port taken: %v", err)
	}
	if n := opened.Load(); n != before {
		t.Errorf("%d pollers opened after the port clash", n-before)
	}
}

// serveWithCredentials runs serve on loopback with --api-credentials and
// memsource for Kinesis, and returns the API address.
func serveWithCredentials(t *testing.T) string {
	t.Helper()
	creds := filepath.Join(t.TempDir(), "credentials")
	os.WriteFile(creds, []byte("[ci]\naws_access_key_id = "+apiKeyID+"\naws_secret_access_key = "+apiSecret+"\n\n[other]\naws_access_key_id=AKIDSECOND\naws_secret_access_key=second\n"), 0o600)
	c := newCommon("test", io.Discard, "127.0.0.1:0")
	c.dataDir, c.functionCheck, c.apiCredentials = t.TempDir(), "never", creds
	memKinesis(c)
	addr, stop := serveWith(t, c)
	t.Cleanup(stop)
	return addr
}

// TestAPIClientsWithCredentials drives every mapping operation with the AWS
// SDK for Go v2, the AWS CLI and the AWS SDK for JavaScript v3, signed with
// esmd's credentials, and checks that unsigned and wrongly signed requests
// fail as AWS fails them.
func TestAPIClientsWithCredentials(t *testing.T) {
	addr := serveWithCredentials(t)
	endpoint := "http://" + addr

	t.Run("go sdk v2", func(t *testing.T) {
		ctx := context.Background()
		c := lambda.New(lambda.Options{BaseEndpoint: aws.String(endpoint), Region: "eu-west-1", RetryMaxAttempts: 1,
			Credentials: credentials.NewStaticCredentialsProvider(apiKeyID, apiSecret, "")})
		m, err := c.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("go-fn"),
			EventSourceArn: aws.String(kinesisARN), StartingPosition: types.EventSourcePositionLatest, Enabled: aws.Bool(false),
			Tags: map[string]string{"team": "go"}})
		if err != nil {
			t.Fatal(err)
		}
		steps := []func() error{
			func() error {
				_, err := c.GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: m.UUID})
				return err
			},
			func() error {
				_, err := c.ListEventSourceMappings(ctx, &lambda.ListEventSourceMappingsInput{FunctionName: aws.String("go-fn")})
				return err
			},
			func() error {
				_, err := c.UpdateEventSourceMapping(ctx, &lambda.UpdateEventSourceMappingInput{UUID: m.UUID, BatchSize: aws.Int32(7)})
				return err
			},
			func() error {
				_, err := c.TagResource(ctx, &lambda.TagResourceInput{Resource: m.EventSourceMappingArn, Tags: map[string]string{"k": "v"}})
				return err
			},
			func() error {
				_, err := c.UntagResource(ctx, &lambda.UntagResourceInput{Resource: m.EventSourceMappingArn, TagKeys: []string{"team"}})
				return err
			},
			func() error {
				out, err := c.ListTags(ctx, &lambda.ListTagsInput{Resource: m.EventSourceMappingArn})
				if err == nil && (len(out.Tags) != 1 || out.Tags["k"] != "v") {
					err = fmt.Errorf("tags %v", out.Tags)
				}
				return err
			},
			func() error {
				_, err := c.DeleteEventSourceMapping(ctx, &lambda.DeleteEventSourceMappingInput{UUID: m.UUID})
				return err
			},
		}
		for i, step := range steps {
			if err := step(); err != nil {
				t.Fatalf("step %d: %v", i+1, err)
			}
		}
	})

	t.Run("aws cli", func(t *testing.T) {
		cli := testenv.AWSCLI(t)
		home := t.TempDir()
		aws := func(key, secret string, args ...string) (map[string]any, string, error) {
			cmd := exec.Command(cli, append([]string{"--endpoint-url", endpoint, "--output", "json", "lambda"}, args...)...)
			cmd.Env = append(os.Environ(), "HOME="+home, "AWS_ACCESS_KEY_ID="+key, "AWS_SECRET_ACCESS_KEY="+secret,
				"AWS_DEFAULT_REGION=ap-southeast-2", "AWS_REGION=ap-southeast-2", "AWS_CONFIG_FILE="+filepath.Join(home, "none"),
				"AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(home, "none"), "AWS_MAX_ATTEMPTS=1", "AWS_PAGER=")
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var out map[string]any
			if err == nil && stdout.Len() > 0 {
				if jerr := json.Unmarshal(stdout.Bytes(), &out); jerr != nil {
					err = fmt.Errorf("output %s: %w", stdout.String(), jerr)
				}
			}
			return out, stderr.String(), err
		}
		run := func(args ...string) map[string]any {
			t.Helper()
			out, stderr, err := aws(apiKeyID, apiSecret, args...)
			if err != nil {
				t.Fatalf("aws lambda %s: %v\n%s", strings.Join(args, " "), err, stderr)
			}
			return out
		}
		m := run("create-event-source-mapping", "--function-name", "cli-fn", "--event-source-arn", kinesisARN,
			"--starting-position", "LATEST", "--no-enabled", "--tags", `{"team":"cli","a b":"c:d é"}`)
		id, arn := m["UUID"].(string), m["EventSourceMappingArn"].(string)
		run("get-event-source-mapping", "--uuid", id)
		if l := run("list-event-source-mappings", "--function-name", "cli-fn"); len(l["EventSourceMappings"].([]any)) != 1 {
			t.Errorf("list: %v", l)
		}
		run("update-event-source-mapping", "--uuid", id, "--batch-size", "7")
		run("tag-resource", "--resource", arn, "--tags", "k=v")
		run("untag-resource", "--resource", arn, "--tag-keys", "team", "a b")
		if tags := run("list-tags", "--resource", arn)["Tags"].(map[string]any); len(tags) != 1 || tags["k"] != "v" {
			t.Errorf("tags %v", tags)
		}
		run("delete-event-source-mapping", "--uuid", id)
		for _, tc := range []struct {
			name, key, secret string
			extra             []string
			want              string
		}{
			{"unsigned", apiKeyID, apiSecret, []string{"--no-sign-request"}, "An error occurred (MissingAuthenticationTokenException) when calling the ListEventSourceMappings operation: Missing Authentication Token"},
			{"unknown key", "AKIDNOBODY", apiSecret, nil, "An error occurred (UnrecognizedClientException) when calling the ListEventSourceMappings operation: The security token included in the request is invalid."},
			{"wrong secret", apiKeyID, "wrong", nil, "An error occurred (InvalidSignatureException) when calling the ListEventSourceMappings operation: The request signature we calculated does not match"},
		} {
			_, stderr, err := aws(tc.key, tc.secret, append([]string{"list-event-source-mappings"}, tc.extra...)...)
			if err == nil || !strings.Contains(stderr, tc.want) {
				t.Errorf("%s: %v %s", tc.name, err, stderr)
			}
		}
	})

	t.Run("js sdk v3", func(t *testing.T) {
		sdk := testenv.JSLambdaSDK(t)
		script := filepath.Join(t.TempDir(), "ops.js")
		os.WriteFile(script, []byte(jsOps), 0o600)
		cmd := exec.Command("node", script, sdk, endpoint, kinesisARN, apiKeyID, apiSecret)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("node: %v\n%s", err, stderr.String())
		}
		var got struct {
			Listed int
			Tags   map[string]string
			Errors []string
		}
		if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
			t.Fatalf("%v: %s", err, stdout.String())
		}
		want := []string{"MissingAuthenticationTokenException 403", "UnrecognizedClientException 403", "InvalidSignatureException 403"}
		if got.Listed != 1 || len(got.Tags) != 1 || got.Tags["k"] != "v" || strings.Join(got.Errors, ",") != strings.Join(want, ",") {
			t.Errorf("js: %+v", got)
		}
	})
}

// jsOps drives every operation with @aws-sdk/client-lambda, then lists
// with no signature, an unknown key and a wrong secret, and prints what
// happened as JSON. Arguments: sdk-dir endpoint arn key secret.
const jsOps = `
const [sdkDir, endpoint, arn, key, secret] = process.argv.slice(2);
const L = require(sdkDir);
const client = (creds) => new L.LambdaClient({ endpoint, region: "sa-east-1", maxAttempts: 1, credentials: creds });
const c = client({ accessKeyId: key, secretAccessKey: secret });
(async () => {
  const m = await c.send(new L.CreateEventSourceMappingCommand({ FunctionName: "js-fn", EventSourceArn: arn,
    StartingPosition: "LATEST", Enabled: false, Tags: { team: "js" } }));
  await c.send(new L.GetEventSourceMappingCommand({ UUID: m.UUID }));
  const l = await c.send(new L.ListEventSourceMappingsCommand({ FunctionName: "js-fn" }));
  await c.send(new L.UpdateEventSourceMappingCommand({ UUID: m.UUID, BatchSize: 7 }));
  await c.send(new L.TagResourceCommand({ Resource: m.EventSourceMappingArn, Tags: { k: "v" } }));
  await c.send(new L.UntagResourceCommand({ Resource: m.EventSourceMappingArn, TagKeys: ["team"] }));
  const t = await c.send(new L.ListTagsCommand({ Resource: m.EventSourceMappingArn }));
  await c.send(new L.DeleteEventSourceMappingCommand({ UUID: m.UUID }));
  const errors = [];
  const anon = new L.LambdaClient({ endpoint, region: "sa-east-1", maxAttempts: 1,
    credentials: { accessKeyId: "x", secretAccessKey: "y" }, signer: { sign: async (r) => r } });
  for (const cl of [anon, client({ accessKeyId: "AKIDNOBODY", secretAccessKey: secret }), client({ accessKeyId: key, secretAccessKey: "wrong" })]) {
    try { await cl.send(new L.ListEventSourceMappingsCommand({})); errors.push("no error"); }
    catch (e) { errors.push(e.name + " " + (e.$metadata && e.$metadata.httpStatusCode)); }
  }
  console.log(JSON.stringify({ Listed: l.EventSourceMappings.length, Tags: t.Tags, Errors: errors }));
})().catch((e) => { console.error(e); process.exit(1); });
`

// TestSlowBodiesKeepMemoryBounded runs the real binary and sends 400
// request bodies of 1 MB that never finish (the last byte is held back):
// esmd's peak RSS stays bounded, and once the senders go away the API
// answers.
func TestSlowBodiesKeepMemoryBounded(t *testing.T) {
	cmd, addr := startBinary(t, buildBinary(t), "--data-dir", t.TempDir(), "--function-check", "never")
	const n, size = 400, 1 << 20
	idle := procStatus(t, cmd.Process.Pid, "VmRSS")
	body := bytes.Repeat([]byte(" "), size-1)
	head := fmt.Sprintf("POST /2015-03-31/event-source-mappings HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", addr, size)
	var wg sync.WaitGroup
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Write([]byte(head))
			c.Write(body) // returns once esmd or the kernel took it all, or when the test closes c
		}()
	}
	// Let esmd take what it will: the writes end once esmd and the socket
	// buffers hold the bodies; those past the limits stay blocked.
	written := make(chan struct{})
	go func() { wg.Wait(); close(written) }()
	select {
	case <-written:
	case <-time.After(5 * time.Second):
	}
	during := procStatus(t, cmd.Process.Pid, "VmRSS")
	for _, c := range conns {
		c.Close()
	}
	wg.Wait()
	testenv.Eventually(t, time.Minute, func(ctx context.Context) error {
		_, err := client(addr).ListEventSourceMappings(ctx, &lambda.ListEventSourceMappingsInput{})
		return err
	})
	// VmHWM is the peak over the whole run, the senders leaving included.
	peak := procStatus(t, cmd.Process.Pid, "VmHWM")
	t.Logf("esmd with %d slow 1 MB bodies: RSS %d MB idle, %d MB while they hang, peak %d MB, %d MB once they left",
		n, idle>>10, during>>10, peak>>10, procStatus(t, cmd.Process.Pid, "VmRSS")>>10)
	if peak > 200<<10 {
		t.Errorf("peak RSS %d MB with %d slow 1 MB bodies", peak>>10, n)
	}
}

// procStatus reads a kB figure of /proc/PID/status.
func procStatus(t *testing.T, pid int, field string) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			var kb int
			fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
			return kb
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// TestServeUnderALowFileLimit runs the real binary with 128 open files and
// floods it with connections: with the default connection bound (derived
// from the file limit) the API answers while the flood stays; with a bound
// above the file limit accept fails for want of descriptors, and the API
// answers again once the flood goes away.
func TestServeUnderALowFileLimit(t *testing.T) {
	bin := buildBinary(t)
	for _, tc := range []struct {
		name      string
		args      []string
		keepFlood bool
	}{
		{"default bound", nil, true},
		{"bound above the file limit", []string{"--max-connections", "1000"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-c", `ulimit -n 128 && exec "$0" "$@"`, bin, "serve", "--addr", "127.0.0.1:0", "--log-format", "json",
				"--data-dir", t.TempDir(), "--function-check", "never"}, tc.args...)
			cmd := exec.Command("sh", args...)
			addr := startListening(t, cmd)
			var flood []net.Conn
			defer func() {
				for _, c := range flood {
					c.Close()
				}
			}()
			for range 150 {
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					break // the backlog is full: flooded enough
				}
				flood = append(flood, c)
			}
			if !tc.keepFlood {
				for _, c := range flood {
					c.Close()
				}
				flood = nil
			}
			testenv.Eventually(t, 2*time.Minute, func(ctx context.Context) error {
				hc := &http.Client{Timeout: 5 * time.Second}
				resp, err := hc.Get("http://" + addr + "/2015-03-31/event-source-mappings/")
				if err != nil {
					return err
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					return errors.New(resp.Status)
				}
				return nil
			})
		})
	}
}

// TestContainerFilesRequireCredentials: the image and docker-compose.yml
// (which cannot run here) listen on every interface with
// --api-credentials, and the example credentials file they mount parses.
func TestContainerFilesRequireCredentials(t *testing.T) {
	root := testenv.RepoRoot()
	for _, f := range []string{"Dockerfile", "docker-compose.yml"} {
		data, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), "0.0.0.0:9000") || !strings.Contains(string(data), "/run/secrets/esmd-api-credentials") {
			t.Errorf("%s does not serve with /run/secrets/esmd-api-credentials", f)
		}
	}
	creds, err := api.LoadCredentials(filepath.Join(root, "examples", "api-credentials"), os.Getenv, nil)
	if err != nil || len(creds) != 1 {
		t.Fatalf("examples/api-credentials: %v %v", creds.IDs(), err)
	}
}

// TestStoreBackupThroughTheSignedAPI: esmd store backup --endpoint signs
// its request with the SDK's credentials, so it works against an API that
// requires them, and fails with AWS's error without them.
func TestStoreBackupThroughTheSignedAPI(t *testing.T) {
	addr := serveWithCredentials(t)
	backup := filepath.Join(t.TempDir(), "esmd.db")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong")
	t.Setenv("AWS_ACCESS_KEY_ID", apiKeyID)
	var stderr bytes.Buffer
	err := storeBackupCmd(context.Background(), []string{"--endpoint", "http://" + addr, backup}, io.Discard, &stderr)
	if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "The request signature we calculated does not match") {
		t.Fatalf("backup with a wrong secret: %v", err)
	}
	t.Setenv("AWS_SECRET_ACCESS_KEY", apiSecret)
	if err := storeBackupCmd(context.Background(), []string{"--endpoint", "http://" + addr, backup}, io.Discard, &stderr); err != nil {
		t.Fatalf("signed backup: %v", err)
	}
	if st, err := os.Stat(backup); err != nil || st.Size() == 0 {
		t.Fatalf("backup file: %v", err)
	}
}
