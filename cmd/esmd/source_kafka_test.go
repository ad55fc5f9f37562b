package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/testenv"
)

// TestServeKafkaEndToEnd drives esmd serve with a self-managed Kafka
// mapping the way a user does: the AWS SDK creates the mapping (bootstrap
// servers of a kfake cluster, a value filter), records are produced to
// three partitions, and esmd invokes a real function (aws-lambda-go under
// the Runtime Interface Emulator) until the mapping's consumer group (its
// UUID) has committed every record, filtered-out ones included.
func TestServeKafkaEndToEnd(t *testing.T) {
	testenv.Skip(t)
	rie := testenv.RIE(t)
	seeds := testenv.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, topic := newKafkaTopic(t, ctx, seeds, "serve-e2e")

	c := newCommon("test", io.Discard, "127.0.0.1:0")
	c.dataDir = t.TempDir()
	c.invokeMode = "rie"
	c.lambdaEndpoint = rie
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- serve(sctx, c, c.logger(io.Discard), func(_ *esm.Engine, addr string) error { addrc <- addr; return nil })
	}()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	addr := <-addrc
	api := client(addr)
	out, err := api.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("function"),
		Topics: []string{topic}, StartingPosition: types.EventSourcePositionTrimHorizon, BatchSize: aws.Int32(10),
		SelfManagedEventSource: &types.SelfManagedEventSource{Endpoints: map[string][]string{"KAFKA_BOOTSTRAP_SERVERS": seeds}},
		// An unauthenticated cluster is configured with its VPC on AWS;
		// esmd accepts the VPC and dials the brokers directly.
		SourceAccessConfigurations: []types.SourceAccessConfiguration{
			{Type: types.SourceAccessTypeVpcSubnet, URI: aws.String("subnet:subnet-0123")},
			{Type: types.SourceAccessTypeVpcSecurityGroup, URI: aws.String("security_group:sg-0123")}},
		FilterCriteria: &types.FilterCriteria{Filters: []types.Filter{{Pattern: aws.String(`{"value":{"keep":[true]}}`)}}}})
	if err != nil {
		t.Fatal(err)
	}
	// The engine drops processing results reported before the mapping is
	// Enabled; records written earlier could be done before it is.
	testenv.Eventually(t, 10*time.Second, func(ctx context.Context) error {
		got, err := api.GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: out.UUID})
		if err == nil && aws.ToString(got.State) != "Enabled" {
			err = fmt.Errorf("state %s", aws.ToString(got.State))
		}
		return err
	})
	const perPart = 30
	var recs []*kgo.Record
	for i := range perPart {
		for pt := range int32(3) {
			recs = append(recs, &kgo.Record{Partition: pt, Key: fmt.Appendf(nil, "k%d", pt), Value: fmt.Appendf(nil, `{"n":%d,"keep":%v}`, i, i%4 != 0)})
		}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func(ctx context.Context) error {
		req := kmsg.NewPtrOffsetFetchRequest()
		req.Group = aws.ToString(out.UUID)
		rt := kmsg.NewOffsetFetchRequestTopic()
		rt.Topic, rt.Partitions = topic, []int32{0, 1, 2}
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return err
		}
		for _, tp := range resp.Topics {
			for _, pp := range tp.Partitions {
				if pp.Offset != perPart {
					return fmt.Errorf("partition %d committed at %d", pp.Partition, pp.Offset)
				}
			}
		}
		return nil
	})
	got, err := api.GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: out.UUID})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(got.State) != "Enabled" || aws.ToString(got.LastProcessingResult) != "OK" {
		t.Errorf("state %s, last processing result %q", aws.ToString(got.State), aws.ToString(got.LastProcessingResult))
	}
	// /metrics shows the poller's OffsetLag per partition: 0 once every
	// record written is processed.
	testenv.Eventually(t, 10*time.Second, func(ctx context.Context) error {
		body, err := httpGet(ctx, "http://"+addr+"/metrics")
		if err != nil {
			return err
		}
		for pt := range 3 {
			line := fmt.Sprintf("lane=\"%s-%d\"} 0\n", topic, pt)
			if !bytes.Contains(body, []byte("esmd_offset_lag{")) || !bytes.Contains(body, []byte(line)) {
				return fmt.Errorf("no esmd_offset_lag %s in\n%s", line, body)
			}
		}
		return nil
	})
}

func httpGet(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// newKafkaTopic creates a topic of 3 partitions on the cluster and returns
// a client producing to it with manual partitioning (closed with the test).
func newKafkaTopic(t *testing.T, ctx context.Context, seeds []string, prefix string) (*kgo.Client, string) {
	t.Helper()
	topic := fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano())
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, 3, 1
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if err := kerr.ErrorForCode(resp.Topics[0].ErrorCode); err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	return cl, topic
}

// kafkaKeys names each record of a Kafka event "<topic>-<partition>/<offset>".
func kafkaKeys(body []byte) ([]string, error) {
	return kafkaEventKeys(body, func(lane string, kr events.KafkaRecord) (string, error) {
		return fmt.Sprintf("%s/%d", lane, kr.Offset), nil
	})
}

// kafkaEventKeys names each record of a Kafka event with name.
func kafkaEventKeys(body []byte, name func(lane string, kr events.KafkaRecord) (string, error)) ([]string, error) {
	var ev events.KafkaEvent
	if err := json.Unmarshal(body, &ev); err != nil {
		return nil, err
	}
	var keys []string
	for lane, rs := range ev.Records {
		for _, kr := range rs {
			k, err := name(lane, kr)
			if err != nil {
				return nil, err
			}
			keys = append(keys, k)
		}
	}
	return keys, nil
}

// TestKafkaSIGKILLRestart kills the esmd process (SIGKILL: no commit, no
// group leave) while a Kafka mapping is mid-stream and starts it again on
// the same data directory: the mapping resumes from its group's committed
// offsets, and every record reaches the function (duplicates only for
// what was uncommitted at the kill).
func TestKafkaSIGKILLRestart(t *testing.T) {
	testenv.Skip(t)
	seeds := testenv.Kafka(t)
	bin := buildBinary(t)
	rec := newInvokeRecorder(kafkaKeys)
	fn := httptest.NewServer(rec)
	defer fn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, topic := newKafkaTopic(t, ctx, seeds, "sigkill")
	const perPart = 150
	var recs []*kgo.Record
	for i := range perPart {
		for pt := range int32(3) {
			recs = append(recs, &kgo.Record{Partition: pt, Value: fmt.Appendf(nil, `{"n":%d}`, i)})
		}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	args := []string{"--data-dir", dir, "--lambda-endpoint", fn.URL, "--function-check", "never"}
	cmd, addr := startBinary(t, bin, args...)
	_, err := client(addr).CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("function"),
		Topics: []string{topic}, StartingPosition: types.EventSourcePositionTrimHorizon, BatchSize: aws.Int32(5),
		SelfManagedEventSource: &types.SelfManagedEventSource{Endpoints: map[string][]string{"KAFKA_BOOTSTRAP_SERVERS": seeds}},
		SourceAccessConfigurations: []types.SourceAccessConfiguration{
			{Type: types.SourceAccessTypeVpcSubnet, URI: aws.String("subnet:subnet-0123")}}})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		if n, _, _ := rec.count(); n < 20 {
			return fmt.Errorf("%d invocations", n)
		}
		return nil
	})
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	_, before, _ := rec.count()
	if before == 3*perPart {
		t.Fatal("every record was delivered before the kill; the test needs a slower function")
	}

	start := time.Now()
	startBinary(t, bin, args...)
	testenv.Eventually(t, 45*time.Second, func(context.Context) error {
		if _, distinct, _ := rec.count(); distinct != 3*perPart {
			return fmt.Errorf("%d of %d records delivered", distinct, 3*perPart)
		}
		return nil
	})
	invokes, distinct, total := rec.count()
	t.Logf("killed after %d records; all %d delivered %v after the restart (%d invocations, %d duplicate deliveries)",
		before, distinct, time.Since(start).Round(time.Millisecond), invokes, total-distinct)
}

// testPKI returns a CA (PEM) and a server certificate for 127.0.0.1 signed
// by it.
func testPKI(t *testing.T) ([]byte, tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "esmd test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestServeKafkaTwoWorkersSCRAM runs two esmd serve processes' worth of
// engines with the same mapping (one ConsumerGroupId) against a kfake
// cluster that requires SASL/SCRAM-SHA-512 over TLS with a private CA, the
// credentials and CA coming from --secrets-file. The second worker joins
// while the first is consuming: the partitions split, every record reaches
// the function, and only records in flight at the handover come twice.
func TestServeKafkaTwoWorkersSCRAM(t *testing.T) {
	testenv.Skip(t)
	caPEM, serverCert := testPKI(t)
	const topic = "two-workers"
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "esmd", "s3cret"),
		kfake.TLS(&tls.Config{Certificates: []tls.Certificate{serverCert}, MinVersion: tls.VersionTLS12}), kfake.SeedTopics(4, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	seeds := kc.ListenAddrs()
	const arn = "arn:aws:secretsmanager:us-east-1:000000000000:secret:"
	secretsPath := filepath.Join(t.TempDir(), "secrets.json")
	b, _ := json.Marshal(map[string]map[string]string{arn + "scram": {"username": "esmd", "password": "s3cret"}, arn + "ca": {"certificate": string(caPEM)}})
	if err := os.WriteFile(secretsPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.DialTLSConfig(&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}),
		kgo.SASL(scram.Auth{User: "esmd", Pass: "s3cret"}.AsSha512Mechanism()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const perPart = 100
	write := func(from, to int) {
		var recs []*kgo.Record
		for i := from; i < to; i++ {
			for pt := range int32(4) {
				recs = append(recs, &kgo.Record{Partition: pt, Value: fmt.Appendf(nil, `{"n":%d}`, i)})
			}
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	worker := func(rec *invokeRecorder) {
		fn := httptest.NewServer(rec)
		t.Cleanup(fn.Close)
		c := newCommon("test", io.Discard, "127.0.0.1:0")
		c.dataDir = t.TempDir()
		c.lambdaEndpoint = fn.URL
		c.functionCheck = "never"
		c.secretsFile = secretsPath
		if err := c.validate(); err != nil {
			t.Fatal(err)
		}
		sctx, stop := context.WithCancel(context.Background())
		addrc := make(chan string, 1)
		done := make(chan error, 1)
		go func() {
			done <- serve(sctx, c, c.logger(io.Discard), func(_ *esm.Engine, addr string) error { addrc <- addr; return nil })
		}()
		t.Cleanup(func() {
			stop()
			if err := <-done; err != nil {
				t.Error(err)
			}
		})
		_, err := client(<-addrc).CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("function"),
			Topics: []string{topic}, StartingPosition: types.EventSourcePositionTrimHorizon, BatchSize: aws.Int32(10),
			SelfManagedEventSource:            &types.SelfManagedEventSource{Endpoints: map[string][]string{"KAFKA_BOOTSTRAP_SERVERS": seeds}},
			SelfManagedKafkaEventSourceConfig: &types.SelfManagedKafkaEventSourceConfig{ConsumerGroupId: aws.String("shared-group")},
			SourceAccessConfigurations: []types.SourceAccessConfiguration{
				{Type: types.SourceAccessTypeSaslScram512Auth, URI: aws.String(arn + "scram")},
				{Type: types.SourceAccessTypeServerRootCaCertificate, URI: aws.String(arn + "ca")}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	first, second := newInvokeRecorder(kafkaKeys), newInvokeRecorder(kafkaKeys)
	write(0, perPart/2)
	worker(first)
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		if n, _, _ := first.count(); n < 5 {
			return fmt.Errorf("%d invocations", n)
		}
		return nil
	})
	worker(second)
	// The second worker's join takes a rebalance: keep writing until it
	// has delivered something, so records exist for both to share.
	written := perPart / 2
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		if _, n, _ := second.count(); n > 0 {
			return nil
		}
		write(written, written+1)
		written++
		return errors.New("the second worker has delivered nothing")
	})
	write(written, written+perPart/2)
	written += perPart / 2
	testenv.Eventually(t, 45*time.Second, func(context.Context) error {
		first.mu.Lock()
		defer first.mu.Unlock()
		second.mu.Lock()
		defer second.mu.Unlock()
		n := len(first.seen)
		for k := range second.seen {
			if first.seen[k] == 0 {
				n++
			}
		}
		if n != 4*written {
			return fmt.Errorf("%d of %d records delivered", n, 4*written)
		}
		return nil
	})
	_, d1, t1 := first.count()
	_, d2, t2 := second.count()
	if d1 == 0 || d2 == 0 {
		t.Errorf("worker 1 delivered %d records, worker 2 %d", d1, d2)
	}
	t.Logf("worker 1: %d records, worker 2: %d records, %d deliveries beyond one per record", d1, d2, t1+t2-4*written)
}

// TestDemo runs `esmd demo --duration`: records flow from the in-process
// Kafka through the filter to the demo function, and the summary line
// counts them.
func TestDemo(t *testing.T) {
	testenv.Skip(t)
	var out, errs bytes.Buffer
	start := time.Now()
	if err := demoCmd(context.Background(), []string{"--duration", "4s", "--rate", "50", "--quiet"}, &out, &errs); err != nil {
		t.Fatalf("demo: %v\n%s", err, errs.String())
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("demo --duration 4s took %v", d)
	}
	m := regexp.MustCompile(`demo: produced (\d+) records, filtered out (\d+), delivered (\d+) to the function in (\d+) invocations`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no summary line:\n%s\n%s", out.String(), errs.String())
	}
	n := func(s string) int { v, _ := strconv.Atoi(s); return v }
	if n(m[1]) < 50 || n(m[2]) == 0 || n(m[3]) == 0 || n(m[4]) == 0 || n(m[2])+n(m[3]) > n(m[1]) {
		t.Errorf("summary: %s", m[0])
	}
	if !strings.Contains(out.String(), "KAFKA_BOOTSTRAP_SERVERS") {
		t.Errorf("no instructions for a real broker:\n%s", out.String())
	}
	t.Log(m[0])
}

// kafkaOnFailureSpec is the SQS/SNS OnFailure record of a Kafka mapping as
// the spec gives it (KAF-15, from AWS's MSK on-failure documentation).
const kafkaOnFailureSpec = `{
  "requestContext": {
    "requestId": "316aa6d0-8154-xmpl-9af7-85d5f4a6bc81",
    "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:myfunction",
    "condition": "RetryAttemptsExhausted",
    "approximateInvokeCount": 1
  },
  "responseContext": { "statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled" },
  "version": "1.0",
  "timestamp": "2019-11-14T00:38:06.021Z",
  "KafkaBatchInfo": {
    "batchSize": 500,
    "eventSourceArn": "arn:aws:kafka:us-east-1:123456789012:cluster/vpc-2priv-2pub/751d2973-a626-431c-9d4e-d7975eb44dd7-2",
    "bootstrapServers": "...",
    "payloadSize": 2039086,
    "recordsInfo": {
      "Topic-0": {
        "firstRecordOffset": "49601189658422359378836298521827638475320189012309704722",
        "lastRecordOffset": "49601189658422359378836298522902373528957594348623495186",
        "firstRecordTimestamp": "2019-11-14T00:38:04.835Z",
        "lastRecordTimestamp": "2019-11-14T00:38:05.580Z"
      }
    }
  }
}`

// jsonShape describes a decoded JSON value by its keys and value types,
// with the keys of maps named in free replaced by "*" (partition keys).
func jsonShape(v any, free map[string]bool, name string) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			key := k
			if free[name] {
				key = "*"
			}
			out[key] = jsonShape(e, free, k)
		}
		return out
	case []any:
		return "array"
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "bool"
	}
	return "null"
}

// TestServeKafkaOnFailureToSQS drives esmd serve through the API with a
// self-managed Kafka mapping whose function (aws-lambda-go under RIE)
// fails on one record, MaximumRetryAttempts 1 and an SQS queue (fauxqs) as
// OnFailure destination: after two invocations the failed batch's
// metadata lands on the queue in the spec's Kafka shape (no payload, no
// eventSourceArn for self-managed Kafka, offsets as strings, millisecond
// ISO timestamps), and the group commits past every record.
func TestServeKafkaOnFailureToSQS(t *testing.T) {
	testenv.Skip(t)
	rie := testenv.RIE(t)
	seeds := testenv.Kafka(t)
	fq := testenv.FauxQS(t)
	t.Setenv("AWS_ENDPOINT_URL_SQS", fq)
	sq := sqs.NewFromConfig(testenv.AWSConfig(fq))
	queueURL, queueARN := sqsQueue(t, sq, "kafka-onfailure", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, topic := newKafkaTopic(t, ctx, seeds, "onfailure-sqs")

	c := newCommon("test", io.Discard, "127.0.0.1:0")
	c.dataDir = t.TempDir()
	c.invokeMode = "rie"
	c.lambdaEndpoint = rie
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	addr, stop := serveWith(t, c)
	defer stop()
	api := client(addr)
	out, err := api.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("function"),
		Topics: []string{topic}, StartingPosition: types.EventSourcePositionTrimHorizon, BatchSize: aws.Int32(5),
		MaximumRetryAttempts:   aws.Int32(1),
		DestinationConfig:      &types.DestinationConfig{OnFailure: &types.OnFailure{Destination: aws.String(queueARN)}},
		SelfManagedEventSource: &types.SelfManagedEventSource{Endpoints: map[string][]string{"KAFKA_BOOTSTRAP_SERVERS": seeds}},
		SourceAccessConfigurations: []types.SourceAccessConfiguration{
			{Type: types.SourceAccessTypeVpcSubnet, URI: aws.String("subnet:subnet-0123")}}})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func(ctx context.Context) error {
		got, err := api.GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: out.UUID})
		if err == nil && aws.ToString(got.State) != "Enabled" {
			err = fmt.Errorf("state %s", aws.ToString(got.State))
		}
		return err
	})
	const perPart = 10
	// One batch: produced together, so the whole partition is fetched at
	// once and batched as [0-4] [5-9].
	var recs []*kgo.Record
	for i := range perPart {
		for pt := range int32(3) {
			v := fmt.Appendf(nil, `{"n":%d}`, i)
			if pt == 1 && i == 3 {
				v = []byte(`{"testfn":{"mode":"error","errorMessage":"record 3 is bad"}}`)
			}
			recs = append(recs, &kgo.Record{Partition: pt, Key: fmt.Appendf(nil, "k%d", i), Value: v})
		}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	group := aws.ToString(out.UUID)
	testenv.Eventually(t, 30*time.Second, func(ctx context.Context) error {
		req := kmsg.NewPtrOffsetFetchRequest()
		req.Group = group
		rt := kmsg.NewOffsetFetchRequestTopic()
		rt.Topic, rt.Partitions = topic, []int32{0, 1, 2}
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return err
		}
		for _, tp := range resp.Topics {
			for _, pp := range tp.Partitions {
				if pp.Offset != perPart {
					return fmt.Errorf("partition %d committed at %d", pp.Partition, pp.Offset)
				}
			}
		}
		return nil
	})

	// The record went to the queue before its offset was committed.
	msgs, err := sq.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &queueURL, MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs.Messages) != 1 {
		t.Fatalf("%d OnFailure messages, want 1", len(msgs.Messages))
	}
	body := []byte(aws.ToString(msgs.Messages[0].Body))
	var got, spec any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("OnFailure message is not JSON: %v\n%s", err, body)
	}
	if err := json.Unmarshal([]byte(kafkaOnFailureSpec), &spec); err != nil {
		t.Fatal(err)
	}
	// Same members and types as the spec's record, except eventSourceArn,
	// which self-managed Kafka has none of (as in its event).
	delete(spec.(map[string]any)["KafkaBatchInfo"].(map[string]any), "eventSourceArn")
	free := map[string]bool{"recordsInfo": true}
	if gs, ss := jsonShape(got, free, ""), jsonShape(spec, free, ""); !reflect.DeepEqual(gs, ss) {
		t.Errorf("OnFailure message shape\n%v\nwant the spec's\n%v\n%s", gs, ss, body)
	}
	var m struct {
		RequestContext struct {
			RequestID, FunctionArn, Condition string
			ApproximateInvokeCount            int
		}
		ResponseContext struct {
			StatusCode      int
			ExecutedVersion string
			FunctionError   string
		}
		Version, Timestamp string
		KafkaBatchInfo     struct {
			BatchSize, PayloadSize int
			BootstrapServers       string
			RecordsInfo            map[string]struct {
				FirstRecordOffset, LastRecordOffset       string
				FirstRecordTimestamp, LastRecordTimestamp string
			}
		}
	}
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	rc, kb := m.RequestContext, m.KafkaBatchInfo
	if rc.Condition != "RetryAttemptsExhausted" || rc.ApproximateInvokeCount != 2 || rc.RequestID == "" ||
		!strings.HasSuffix(rc.FunctionArn, ":function:function") {
		t.Errorf("requestContext %+v", rc)
	}
	if m.ResponseContext.StatusCode != 200 || m.ResponseContext.FunctionError != "Unhandled" || m.Version != "1.0" {
		t.Errorf("responseContext %+v, version %q", m.ResponseContext, m.Version)
	}
	iso := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)
	lane := topic + "-1"
	info, ok := kb.RecordsInfo[lane]
	if !ok || len(kb.RecordsInfo) != 1 || kb.BootstrapServers != strings.Join(seeds, ",") || kb.PayloadSize <= 0 {
		t.Fatalf("KafkaBatchInfo %+v", kb)
	}
	first, _ := strconv.Atoi(info.FirstRecordOffset)
	last, _ := strconv.Atoi(info.LastRecordOffset)
	if first > 3 || last < 3 || kb.BatchSize != last-first+1 || !iso.MatchString(m.Timestamp) ||
		!iso.MatchString(info.FirstRecordTimestamp) || !iso.MatchString(info.LastRecordTimestamp) {
		t.Errorf("KafkaBatchInfo %+v, timestamp %s", kb, m.Timestamp)
	}
	t.Logf("OnFailure message: %s", body)
}
