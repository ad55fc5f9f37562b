package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/esmd/esmd/internal/awsconfig"
)

// RawSpec is what a raw loop needs, handed to the raw child process as
// JSON on its standard input.
type RawSpec struct {
	Source string `json:"source"`
	// Endpoints are the broker or server addresses (Kafka seeds, an AMQP
	// or STOMP URL, a mongodb:// URI); Name is the topic, queue URL,
	// stream or collection; Partitions the partitions or shards.
	Endpoints  []string `json:"endpoints,omitempty"`
	Name       string   `json:"name"`
	Partitions int      `json:"partitions,omitempty"`
	// Arn is the event source ARN the events carry; VHost is RabbitMQ's
	// virtual host.
	Arn   string `json:"arn,omitempty"`
	VHost string `json:"vhost,omitempty"`
	// Since is where a change stream starts (DocumentDB).
	Since time.Time `json:"since,omitzero"`
	// BatchSize and Window are the mapping's batching.
	BatchSize int           `json:"batch_size"`
	Window    time.Duration `json:"window"`
	// Filter, when set, makes the loop drop records whose "kind" is not
	// "match" before invoking, as esmd's filter does.
	Filter bool `json:"filter,omitempty"`
	// Lambda is the Invoke API's base URL; RIE serialises invocations
	// (--invoke-mode rie), as esmd does.
	Lambda string `json:"lambda"`
	RIE    bool   `json:"rie,omitempty"`
	Region string `json:"region"`
}

// rawLoops are the plain client loops, by source.
var rawLoops = map[string]func(ctx context.Context, s *RawSpec, inv *rawInvoker) error{
	"kafka":      rawKafka,
	"sqs":        rawSQS,
	"kinesis":    rawKinesis,
	"rabbitmq":   rawRabbitMQ,
	"activemq":   rawActiveMQ,
	"dynamodb":   rawDynamoDB,
	"documentdb": rawDocumentDB,
}

// RawMain runs the raw loop that spec (JSON) describes until ctx is done:
// the body of the child process `esmd bench --raw-child`.
func RawMain(ctx context.Context, spec io.Reader) error {
	var s RawSpec
	if err := json.NewDecoder(io.LimitReader(spec, 1<<20)).Decode(&s); err != nil {
		return fmt.Errorf("raw loop spec: %w", err)
	}
	loop := rawLoops[s.Source]
	if loop == nil {
		return fmt.Errorf("raw loop: source %q has no raw loop", s.Source)
	}
	inv, err := newRawInvoker(ctx, &s)
	if err != nil {
		return err
	}
	err = loop(ctx, &s, inv)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// rawInvoker posts events to the Lambda Invoke API the way a program
// written against the API would: net/http, SigV4 signed with the SDK's
// signer and credentials, retried until it succeeds.
type rawInvoker struct {
	url    string
	client *http.Client
	signer *v4.Signer
	creds  aws.CredentialsProvider
	region string
	rie    chan struct{} // one invocation at a time under RIE
}

func newRawInvoker(ctx context.Context, s *RawSpec) (*rawInvoker, error) {
	cfg, err := awsconfig.Load(ctx, s.Region, true)
	if err != nil {
		return nil, err
	}
	inv := &rawInvoker{
		url:    strings.TrimRight(s.Lambda, "/") + "/2015-03-31/functions/" + url.PathEscape(benchFunction) + "/invocations",
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024}, Timeout: 15 * time.Minute},
		signer: v4.NewSigner(), creds: cfg.Credentials, region: s.Region,
	}
	if s.RIE {
		inv.rie = make(chan struct{}, 1)
	}
	return inv, nil
}

// Invoke posts event until the function answers without an error, or ctx
// is done.
func (r *rawInvoker) Invoke(ctx context.Context, event []byte) error {
	if r.rie != nil {
		select {
		case r.rie <- struct{}{}:
			defer func() { <-r.rie }()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for {
		err := r.invoke(ctx, event)
		if err == nil || ctx.Err() != nil {
			return ctx.Err()
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (r *rawInvoker) invoke(ctx context.Context, event []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url, bytes.NewReader(event))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	creds, err := r.creds.Retrieve(ctx)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(event)
	if err := r.signer.SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "lambda", r.region, time.Now()); err != nil {
		return err
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Amz-Function-Error") != "" {
		return fmt.Errorf("invoke: status %d %s", resp.StatusCode, resp.Header.Get("X-Amz-Function-Error"))
	}
	return nil
}

// benchFunction is the function every bench invocation names; under RIE
// it is the only name there is.
const benchFunction = "function"

// keep reports whether a raw loop with a filter invokes body: the plain
// equivalent of esmd's filter on "kind".
func keep(s *RawSpec, body []byte) bool {
	return !s.Filter || bytes.Contains(body, []byte(`"kind":"match"`))
}

// deadline is a point in time a loop waits for.
type deadline struct{ at time.Time }

func timeAfter(d time.Duration) deadline { return deadline{time.Now().Add(d)} }

func (d deadline) passed() bool        { return !time.Now().Before(d.at) }
func (d deadline) left() time.Duration { return time.Until(d.at) }

// region is the AWS region of the SDK's environment, else us-east-1.
func region() string {
	for _, k := range []string{"AWS_REGION", "AWS_DEFAULT_REGION"} {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	return "us-east-1"
}
