package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/esmd/esmd/internal/testenv"
)

const (
	secretArn   = "arn:aws:secretsmanager:us-east-1:000000000000:secret:"
	mqBroker    = "arn:aws:mq:us-east-1:000000000000:broker:prod:b-1234"
	docdbArn    = "arn:aws:rds:us-east-1:000000000000:cluster:prod"
	theSecretPW = "hunter2-do-not-leak"
)

// listener counts the connections an address receives (an attacker's
// broker).
type listener struct {
	addr  string
	conns atomic.Int32
	stop  func()
}

func listen(t *testing.T) *listener {
	t.Helper()
	l := &listener{}
	l.start(t, "127.0.0.1:0")
	t.Cleanup(func() { l.stop() })
	return l
}

func (l *listener) start(t *testing.T, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	l.addr = ln.Addr().String()
	l.conns.Store(0)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			l.conns.Add(1)
			c.Close()
		}
	}()
	l.stop = func() { ln.Close(); <-done }
}

// restart listens again on the same address with a count of zero: a
// connection accepted late by the old listener is not counted.
func (l *listener) restart(t *testing.T) {
	t.Helper()
	l.stop()
	l.start(t, l.addr)
}

// writeSecrets writes a secrets file of BASIC_AUTH secrets, each
// restricted to the endpoints listed (nil: unrestricted).
func writeSecrets(t *testing.T, path string, allowed map[string][]string) {
	t.Helper()
	m := map[string]map[string]any{}
	for name, eps := range allowed {
		s := map[string]any{"username": "esmd", "password": theSecretPW}
		if eps != nil {
			s["esmd:allowed-endpoints"] = eps
		}
		m[secretArn+name] = s
	}
	b, _ := json.Marshal(m)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func basicAuth(name string) []types.SourceAccessConfiguration {
	return []types.SourceAccessConfiguration{{Type: types.SourceAccessTypeBasicAuth, URI: aws.String(secretArn + name)}}
}

func kafkaInput(servers string, sacs []types.SourceAccessConfiguration) *lambda.CreateEventSourceMappingInput {
	return &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("function"), Topics: []string{"topic"},
		StartingPosition:           types.EventSourcePositionTrimHorizon,
		SelfManagedEventSource:     &types.SelfManagedEventSource{Endpoints: map[string][]string{"KAFKA_BOOTSTRAP_SERVERS": {servers}}},
		SourceAccessConfigurations: sacs}
}

// secretsServe runs serve with a secrets file and source flags; mappings
// invoke a no-op function.
func secretsServe(t *testing.T, dir, secrets string, flags ...string) (*lambda.Client, func()) {
	t.Helper()
	fn := httptest.NewServer(newInvokeRecorder(func([]byte) ([]string, error) { return nil, nil }))
	t.Cleanup(fn.Close)
	c := newCommon("test", io.Discard, "127.0.0.1:0")
	if err := c.fs.Parse(append([]string{"--data-dir", dir, "--secrets-file", secrets, "--function-check", "never",
		"--lambda-endpoint", fn.URL}, flags...)); err != nil {
		t.Fatal(err)
	}
	addr, stop := serveWith(t, c)
	return client(addr), stop
}

// TestSecretRestrictionRefusesExfiltration is issue 19's secret theft: a
// caller names its own host as a broker and a BASIC_AUTH secret of
// --secrets-file. A secret restricted with esmd:allowed-endpoints is
// refused at create and at update with an InvalidParameterValueException
// naming the secret and the endpoint (never the password), and nothing
// connects to the caller's host; a mapping stored before the restriction
// is disabled at connect time, before any connection.
func TestSecretRestrictionRefusesExfiltration(t *testing.T) {
	attacker := listen(t)
	const good = "127.0.0.1:19092"
	dir := t.TempDir()
	path := filepath.Join(dir, "secrets.json")
	writeSecrets(t, path, map[string][]string{
		"kafka": {good, "*.brokers.example.com:9096", "arn:aws:kafka:us-east-1:000000000000:cluster/prod/*"},
		"mq":    {mqBroker},
		"docdb": {"docdb.example.com:27017"},
		"open":  nil,
	})
	api, stop := secretsServe(t, dir, path,
		"--mq-broker", mqBroker+"=amqps://mq.example.com:5671",
		"--mq-broker", "arn:aws:mq:us-east-1:000000000000:broker:evil:b-666=amqps://"+attacker.addr,
		"--mq-broker", "arn:aws:mq:us-east-1:000000000000:broker:amq:b-777=stomp+ssl://"+attacker.addr,
		"--docdb-cluster", docdbArn+"=mongodb://"+attacker.addr,
		"--msk-cluster", "arn:aws:kafka:us-east-1:000000000000:cluster/test/1="+attacker.addr)
	ctx := context.Background()

	refused := []struct {
		name     string
		in       *lambda.CreateEventSourceMappingInput
		endpoint string
	}{
		{"self-managed kafka", kafkaInput(attacker.addr, basicAuth("kafka")), attacker.addr},
		{"port not allowed", kafkaInput("127.0.0.1:19093", basicAuth("kafka")), "127.0.0.1:19093"},
		{"msk cluster not allowed", &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("function"), Topics: []string{"topic"},
			EventSourceArn: aws.String("arn:aws:kafka:us-east-1:000000000000:cluster/test/1"), StartingPosition: types.EventSourcePositionLatest,
			SourceAccessConfigurations: []types.SourceAccessConfiguration{{Type: types.SourceAccessTypeSaslScram512Auth, URI: aws.String(secretArn + "kafka")}}},
			attacker.addr},
		{"rabbitmq broker not allowed", &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("function"), Queues: []string{"q"},
			EventSourceArn: aws.String("arn:aws:mq:us-east-1:000000000000:broker:evil:b-666"), SourceAccessConfigurations: basicAuth("mq")},
			attacker.addr},
		{"activemq broker not allowed", &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("function"), Queues: []string{"q"},
			EventSourceArn: aws.String("arn:aws:mq:us-east-1:000000000000:broker:amq:b-777"), SourceAccessConfigurations: basicAuth("mq")},
			attacker.addr},
		{"documentdb cluster not allowed", &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("function"),
			EventSourceArn: aws.String(docdbArn), StartingPosition: types.EventSourcePositionLatest,
			DocumentDBEventSourceConfig: &types.DocumentDBEventSourceConfig{DatabaseName: aws.String("db")},
			SourceAccessConfigurations:  basicAuth("docdb")},
			attacker.addr},
	}
	for _, tc := range refused {
		_, err := api.CreateEventSourceMapping(ctx, tc.in)
		var ipv *types.InvalidParameterValueException
		if !errors.As(err, &ipv) {
			t.Errorf("%s: %v, want InvalidParameterValueException", tc.name, err)
			continue
		}
		secret := tc.in.SourceAccessConfigurations[0].URI
		if msg := aws.ToString(ipv.Message); !strings.Contains(msg, *secret) || !strings.Contains(msg, tc.endpoint) || strings.Contains(msg, theSecretPW) {
			t.Errorf("%s: message %q, want the secret %s and the endpoint %s", tc.name, msg, *secret, tc.endpoint)
		}
	}
	if out, err := api.ListEventSourceMappings(ctx, &lambda.ListEventSourceMappingsInput{}); err != nil || len(out.EventSourceMappings) != 0 {
		t.Fatalf("refused mappings were stored: %v %v", out, err)
	}

	// Allowed: the listed broker, a name under the listed domain, the
	// listed broker ARN.
	for _, in := range []*lambda.CreateEventSourceMappingInput{
		kafkaInput(good, basicAuth("kafka")),
		kafkaInput("b-1.brokers.example.com:9096", basicAuth("kafka")),
		{FunctionName: aws.String("function"), Queues: []string{"q"}, EventSourceArn: aws.String(mqBroker), SourceAccessConfigurations: basicAuth("mq"),
			Enabled: aws.Bool(false)},
	} {
		if _, err := api.CreateEventSourceMapping(ctx, in); err != nil {
			t.Errorf("allowed mapping refused: %v", err)
		}
	}

	if n := attacker.conns.Load(); n != 0 {
		t.Errorf("the caller's host received %d connections", n)
	}

	// Update: a mapping on the caller's host with an unrestricted secret
	// may not switch to the restricted one.
	out, err := api.CreateEventSourceMapping(ctx, kafkaInput(attacker.addr, basicAuth("open")))
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func(ctx context.Context) error {
		_, err := api.UpdateEventSourceMapping(ctx, &lambda.UpdateEventSourceMappingInput{UUID: out.UUID, SourceAccessConfigurations: basicAuth("kafka")})
		var ipv *types.InvalidParameterValueException
		if errors.As(err, &ipv) && strings.Contains(aws.ToString(ipv.Message), attacker.addr) {
			return nil
		}
		return fmt.Errorf("update: %v", err) // ResourceInUse while Creating
	})
	stop()

	// Connect time: the mapping's secret is restricted after it was
	// stored (the file edited, esmd restarted): the mapping is disabled
	// with ESM_CONFIG_NOT_VALID, before it connects again.
	attacker.restart(t)
	writeSecrets(t, path, map[string][]string{"open": {good}})
	api, stop = secretsServe(t, dir, path)
	defer stop()
	var got *lambda.GetEventSourceMappingOutput
	testenv.Eventually(t, 20*time.Second, func(ctx context.Context) error {
		got, err = api.GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: out.UUID})
		if err == nil && aws.ToString(got.State) != "Disabled" {
			err = fmt.Errorf("state %s, %s", aws.ToString(got.State), aws.ToString(got.LastProcessingResult))
		}
		return err
	})
	res := aws.ToString(got.LastProcessingResult)
	if aws.ToString(got.StateTransitionReason) != "ESM_CONFIG_NOT_VALID" || !strings.HasPrefix(res, "PROBLEM: ") ||
		!strings.Contains(res, secretArn+"open") || !strings.Contains(res, attacker.addr) || strings.Contains(res, theSecretPW) {
		t.Errorf("disabled with %q, %q", aws.ToString(got.StateTransitionReason), res)
	}
	if n := attacker.conns.Load(); n != 0 {
		t.Errorf("the caller's host received %d connections after the restriction", n)
	}
}

// TestLastProcessingResultIsNoPortScanner: a caller who may create
// self-managed Kafka mappings names any host:port as a bootstrap server.
// Whether nothing listens there, a service that is no Kafka broker answers,
// a listener never answers, or the name does not resolve,
// LastProcessingResult says the same AWS phrase.
func TestLastProcessingResultIsNoPortScanner(t *testing.T) {
	dir := t.TempDir()
	api, stop := secretsServe(t, dir, "")
	defer stop()
	ctx := context.Background()
	ids := map[string]*string{}
	for name, addr := range testenv.Unreachable(t) {
		out, err := api.CreateEventSourceMapping(ctx, kafkaInput(addr, []types.SourceAccessConfiguration{
			{Type: types.SourceAccessTypeVpcSubnet, URI: aws.String("subnet:subnet-0123")}}))
		if err != nil {
			t.Fatal(err)
		}
		ids[name] = out.UUID
	}
	const want = "PROBLEM: Connection error. Please check your event source connection configuration."
	for name, id := range ids {
		testenv.Eventually(t, 40*time.Second, func(ctx context.Context) error {
			got, err := api.GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: id})
			if err != nil {
				return err
			}
			if res := aws.ToString(got.LastProcessingResult); res != want {
				return fmt.Errorf("%s: LastProcessingResult %q", name, res)
			}
			return nil
		})
	}
}

// TestSignedExfiltrationRefused is issue 19's scenario with authentication
// on: an unsigned request is refused before anything else, and a request
// signed with esmd's credentials that names the caller's host for a
// restricted secret is refused by the secret's restriction. Nothing
// connects to the caller's host.
func TestSignedExfiltrationRefused(t *testing.T) {
	attacker := listen(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "secrets.json")
	writeSecrets(t, path, map[string][]string{"kafka": {"127.0.0.1:19092"}})
	creds := filepath.Join(dir, "credentials")
	os.WriteFile(creds, []byte("[ci]\naws_access_key_id = "+apiKeyID+"\naws_secret_access_key = "+apiSecret+"\n"), 0o600)
	c := newCommon("test", io.Discard, "127.0.0.1:0")
	if err := c.fs.Parse([]string{"--data-dir", dir, "--secrets-file", path, "--function-check", "never", "--api-credentials", creds}); err != nil {
		t.Fatal(err)
	}
	addr, stop := serveWith(t, c)
	defer stop()
	ctx := context.Background()
	in := kafkaInput(attacker.addr, basicAuth("kafka"))

	unsigned := lambda.New(lambda.Options{BaseEndpoint: aws.String("http://" + addr), Region: "us-east-1", RetryMaxAttempts: 1,
		Credentials: aws.AnonymousCredentials{}})
	if _, err := unsigned.CreateEventSourceMapping(ctx, in); err == nil || !strings.Contains(err.Error(), "MissingAuthenticationToken") {
		t.Errorf("unsigned: %v", err)
	}
	signed := lambda.New(lambda.Options{BaseEndpoint: aws.String("http://" + addr), Region: "us-east-1", RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(apiKeyID, apiSecret, "")})
	_, err := signed.CreateEventSourceMapping(ctx, in)
	var ipv *types.InvalidParameterValueException
	if !errors.As(err, &ipv) || !strings.Contains(aws.ToString(ipv.Message), attacker.addr) {
		t.Errorf("signed: %v, want InvalidParameterValueException naming %s", err, attacker.addr)
	}
	if out, err := signed.ListEventSourceMappings(ctx, &lambda.ListEventSourceMappingsInput{}); err != nil || len(out.EventSourceMappings) != 0 {
		t.Errorf("mappings stored: %v %v", out, err)
	}
	if n := attacker.conns.Load(); n != 0 {
		t.Errorf("the caller's host received %d connections", n)
	}
}

// TestReplayFailureIsNoPortScanner: a failed replay shows in
// LastProcessingResult, and, like a failed poll, it must not say what
// listens on the host:port a caller named (a closed port, a service that is
// no Kafka broker): replaying a disabled self-managed Kafka mapping would
// otherwise probe any address without ever starting a poller.
func TestReplayFailureIsNoPortScanner(t *testing.T) {
	dir := t.TempDir()
	api, stop := secretsServe(t, dir, "")
	defer stop()
	ctx := context.Background()
	addr := api.Options().BaseEndpoint
	for name, target := range testenv.Unreachable(t) {
		if name == "silent" || name == "unresolvable" {
			continue // a replay waits for these as long as a poll does
		}
		in := kafkaInput(target, []types.SourceAccessConfiguration{{Type: types.SourceAccessTypeVpcSubnet, URI: aws.String("subnet:subnet-0123")}})
		in.Enabled = aws.Bool(false)
		out, err := api.CreateEventSourceMapping(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post(aws.ToString(addr)+replayPrefix+aws.ToString(out.UUID)+replaySuffix, "application/json", strings.NewReader(`{"Position":"TRIM_HORIZON"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("%s: replay answered %d", name, resp.StatusCode)
		}
		testenv.Eventually(t, 60*time.Second, func(ctx context.Context) error {
			got, err := api.GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: out.UUID})
			if err != nil {
				return err
			}
			res := aws.ToString(got.LastProcessingResult)
			if !strings.HasPrefix(res, "PROBLEM: replay") {
				return fmt.Errorf("%s: LastProcessingResult %q", name, res)
			}
			_, port, _ := net.SplitHostPort(target)
			if strings.Contains(res, port) || strings.Contains(res, "dial") || strings.Contains(res, "refused") {
				t.Errorf("%s: LastProcessingResult tells what listens at %s: %q", name, target, res)
			}
			return nil
		})
	}
}

// TestRequireAllowedEndpoints: with --require-allowed-endpoints, a secret
// without esmd:allowed-endpoints (the only kind a Secrets Manager secret
// written for something else can be) is refused at create for any
// endpoint, and nothing connects to the caller's host.
func TestRequireAllowedEndpoints(t *testing.T) {
	attacker := listen(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "secrets.json")
	writeSecrets(t, path, map[string][]string{"open": nil})
	api, stop := secretsServe(t, dir, path, "--require-allowed-endpoints")
	defer stop()
	_, err := api.CreateEventSourceMapping(context.Background(), kafkaInput(attacker.addr, basicAuth("open")))
	var ipv *types.InvalidParameterValueException
	want := "The secret " + secretArn + "open may not be sent to " + attacker.addr + ": the secret has no esmd:allowed-endpoints, which this esmd requires."
	if !errors.As(err, &ipv) || aws.ToString(ipv.Message) != want {
		t.Errorf("create: %v, want %q", err, want)
	}
	if err != nil && strings.Contains(err.Error(), theSecretPW) {
		t.Errorf("the answer shows the password: %v", err)
	}
	if n := attacker.conns.Load(); n != 0 {
		t.Errorf("the caller's host received %d connections", n)
	}
}
