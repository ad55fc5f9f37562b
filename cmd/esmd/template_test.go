package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/esmd/esmd/internal/ddbstreams"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/templates"
)

// samFunctions stands where `sam local start-lambda` would: it serves the
// Invoke API for every function of a template (by the name in the path),
// and runs each invocation on testfn under RIE, recording which function
// got which records.
type samFunctions struct {
	rie    string
	invoke sync.Mutex // RIE runs one invocation at a time, as SAM local runs one per container
	mu     sync.Mutex
	got    map[string][]string // function name -> SQS bodies and Kinesis data, in order
}

func (f *samFunctions) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	name, ok := strings.CutPrefix(req.URL.Path, "/2015-03-31/functions/")
	name, ok2 := strings.CutSuffix(name, "/invocations")
	body, err := io.ReadAll(req.Body)
	if !ok || !ok2 || err != nil {
		http.Error(w, "not an Invoke request", http.StatusNotFound)
		return
	}
	var ev struct {
		Records []struct {
			Body    string `json:"body"`
			Kinesis *struct {
				Data []byte `json:"data"`
			} `json:"kinesis"`
		}
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.invoke.Lock()
	resp, err := http.Post(f.rie+"/2015-03-31/functions/function/invocations", "application/json", bytes.NewReader(body))
	f.invoke.Unlock()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		f.mu.Lock()
		for _, r := range ev.Records {
			if r.Kinesis != nil {
				f.got[name] = append(f.got[name], string(r.Kinesis.Data))
			} else {
				f.got[name] = append(f.got[name], r.Body)
			}
		}
		f.mu.Unlock()
	}
	w.WriteHeader(resp.StatusCode)
	w.Write(out)
}

func (f *samFunctions) records() map[string][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string][]string{}
	for k, v := range f.got {
		out[k] = slices.Clone(v)
	}
	return out
}

const ordersTemplate = `AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Description: orders, read from an SQS queue and a Kinesis stream

Parameters:
  QueueName:
    Type: String
  StreamName:
    Type: String
  Stage:
    Type: String
    Default: dev

Conditions:
  IsDev: !Equals [!Ref Stage, dev]

Resources:
  OrdersQueue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Ref QueueName

  OrdersStream:
    Type: AWS::Kinesis::Stream
    Properties:
      Name: !Ref StreamName
      ShardCount: 1

  QueueFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: bin/
      Handler: bootstrap
      Runtime: provided.al2023
      Events:
        Orders:
          Type: SQS
          Properties:
            Queue: !GetAtt OrdersQueue.Arn
            BatchSize: !If [IsDev, 2, 10]
            FunctionResponseTypes: [ReportBatchItemFailures]
        Health:
          Type: Api
          Properties:
            Path: /health
            Method: get

  StreamFunction:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: !Sub ${AWS::StackName}-order-stream
      CodeUri: bin/
      Handler: bootstrap
      Runtime: provided.al2023
      Events:
        Stream:
          Type: Kinesis
          Properties:
            Stream: !GetAtt OrdersStream.Arn
            StartingPosition: TRIM_HORIZON
            BatchSize: 3
`

// TestRunSAMTemplateEndToEnd runs the real binary as a user would beside
// sam local start-lambda: esmd run -f template.yaml reads a SAM template's
// SQS and Kinesis events, resolves the queue's and stream's ARNs from their
// names in the template (given through --parameter-overrides), polls
// fauxqs and kinesis-local, and invokes each function by the name SAM local
// serves it under (the logical id; the FunctionName when set). RIE, behind
// an Invoke endpoint that serves every name, stands in for SAM local, so
// esmd invokes it as it invokes SAM local: --invoke-mode aws.
func TestRunSAMTemplateEndToEnd(t *testing.T) {
	testenv.Skip(t)
	ep := testenv.Kinesis(t)
	fq := testenv.FauxQS(t)
	t.Setenv("AWS_ENDPOINT_URL_KINESIS", ep)
	t.Setenv("AWS_ENDPOINT_URL_SQS", fq)
	kc := awskinesis.NewFromConfig(testenv.AWSConfig(ep))
	sc := sqs.NewFromConfig(testenv.AWSConfig(fq))
	qurl, qarn := sqsQueue(t, sc, "orders", nil)
	stream, sarn := kinesisStream(t, kc, "orders", 1)
	queue := qarn[strings.LastIndex(qarn, ":")+1:]

	fns := &samFunctions{rie: testenv.RIE(t), got: map[string][]string{}}
	srv := httptest.NewServer(fns)
	defer srv.Close()

	dir := t.TempDir()
	file := filepath.Join(dir, "template.yaml")
	if err := os.WriteFile(file, []byte(ordersTemplate), 0o600); err != nil {
		t.Fatal(err)
	}
	_, addr := startCommand(t, buildBinary(t), "run", "-f", file, "--data-dir", filepath.Join(dir, "data"),
		"--lambda-endpoint", srv.URL,
		"--parameter-overrides", fmt.Sprintf("QueueName=%s StreamName=%s", queue, stream))

	ctx := context.Background()
	var sqsBodies, kinBodies []string
	for i := range 5 {
		sqsBodies = append(sqsBodies, fmt.Sprintf(`{"order":%d,"via":"sqs"}`, i))
		kinBodies = append(kinBodies, fmt.Sprintf(`{"order":%d,"via":"kinesis"}`, i))
	}
	sqsSend(t, sc, qurl, sqsBodies...)
	kinesisPut(t, kc, stream, map[string]string{}, kinBodies...)

	// The mappings the template declared, through the API as a user sees them.
	out, err := client(addr).ListEventSourceMappings(ctx, &lambda.ListEventSourceMappingsInput{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, m := range out.EventSourceMappings {
		got[aws.ToString(m.EventSourceArn)] = aws.ToString(m.FunctionArn)
	}
	want := map[string]string{
		qarn: "arn:aws:lambda:us-east-1:000000000000:function:QueueFunction",
		sarn: "arn:aws:lambda:us-east-1:000000000000:function:local-order-stream",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("mappings %v, want %v", got, want)
	}

	testenv.Eventually(t, 60*time.Second, func(context.Context) error {
		r := fns.records()
		if len(r["QueueFunction"]) < len(sqsBodies) || len(r["local-order-stream"]) < len(kinBodies) {
			return fmt.Errorf("delivered so far: %v", r)
		}
		return nil
	})
	r := fns.records()
	sorted := slices.Clone(r["QueueFunction"])
	slices.Sort(sorted)
	if !slices.Equal(sorted, sqsBodies) {
		t.Errorf("QueueFunction got %q, want %q (in any order)", r["QueueFunction"], sqsBodies)
	}
	if !slices.Equal(r["local-order-stream"], kinBodies) {
		t.Errorf("local-order-stream got %q, want %q in order", r["local-order-stream"], kinBodies)
	}
	if len(r) != 2 {
		t.Errorf("functions invoked: %v", r)
	}
	waitCount(t, sc, qurl, 0, 30*time.Second)
}

// TestRunTemplateErrors checks that esmd run names the template line of
// what it cannot resolve, and the event a refused mapping came from.
func TestRunTemplateErrors(t *testing.T) {
	dir := t.TempDir()
	head := "Transform: AWS::Serverless-2016-10-31\nResources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties:\n      Events:\n        Orders:\n          Type: SQS\n          Properties:\n"
	cases := map[string]string{
		head + "            Queue: !GetAtt Missing.Arn\n":                                               "template.yaml:10: Fn.Events.Orders.Properties.Queue: !GetAtt Missing.Arn: the template has no resource Missing",
		head + "            Queue: arn:aws:sqs:us-east-1:000000000000:q\n            BatchSize: 20\n":   "template.yaml:8: Fn.Events.Orders (SQS): InvalidParameterValueException: Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10",
		head + "            Queue: arn:aws:sqs:us-east-1:000000000000:q\n            BatchSize: many\n": "template.yaml:8: Fn.Events.Orders (SQS): InvalidRequestContentException",
		"Resources:\n  Q:\n    Type: AWS::SQS::Queue\n":                                                 "the CloudFormation template declares no event source mappings",
	}
	for content, want := range cases {
		file := filepath.Join(dir, "template.yaml")
		os.WriteFile(file, []byte(content), 0o600)
		var stderr bytes.Buffer
		code := run(context.Background(), []string{"run", "-f", file, "--data-dir", filepath.Join(dir, "d"), "--function-check", "never"}, nil, io.Discard, &stderr)
		if code != 1 || !strings.Contains(stderr.String(), want) {
			t.Errorf("%s: exit %d, stderr %q, want %q", content, code, stderr.String(), want)
		}
	}
}

// TestTemplateTableStream checks that GetAtt Table.StreamArn is looked up
// where the SDK points DynamoDB Streams (ListStreams by table name), and
// that a table with no stream is an error that says how to give the ARN.
func TestTemplateTableStream(t *testing.T) {
	s, err := ddbstreams.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t.Setenv("AWS_ENDPOINT_URL_DYNAMODB_STREAMS", s.URL())
	table := fmt.Sprintf("orders-%d", time.Now().UnixNano())
	arn, err := s.CreateStream(ddbstreams.StreamConfig{Table: table, ViewType: ddbtypes.StreamViewTypeNewImage,
		KeySchema: []ddbtypes.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: ddbtypes.KeyTypeHash}}, Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "template.yaml")
	os.WriteFile(file, []byte(`Transform: AWS::Serverless-2016-10-31
Parameters:
  Table:
    Type: String
Resources:
  OrdersTable:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: !Ref Table
  Audit:
    Type: AWS::Serverless::Function
    Properties:
      Events:
        Changes:
          Type: DynamoDB
          Properties:
            Stream: !GetAtt OrdersTable.StreamArn
            StartingPosition: LATEST
`), 0o600)
	o := runFlags(io.Discard)
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	read := func(table string) ([]declared, error) {
		topts := templates.Options{Region: "us-east-1", Account: "000000000000", Parameters: map[string]string{"Table": table},
			StreamArn: func(table string) (string, error) { return latestStream(context.Background(), o.common, table) }}
		decls, _, err := readMappingsFile(file, topts, slog.New(slog.NewTextHandler(io.Discard, nil)))
		return decls, err
	}
	decls, err := read(table)
	if err != nil {
		t.Fatal(err)
	}
	if got := aws.ToString(decls[0].cfg.EventSourceArn); got != arn {
		t.Errorf("EventSourceArn %s, want %s", got, arn)
	}
	_, err = read("no-such-table")
	if want := "template.yaml:17: Audit.Events.Changes.Properties.Stream: !GetAtt OrdersTable.StreamArn: the stream of table no-such-table: the table has no stream; give its ARN with --resource OrdersTable.StreamArn=ARN"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v, want %q", err, want)
	}
}
