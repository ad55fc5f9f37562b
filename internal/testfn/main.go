// Command testfn is the Lambda function esmd's integration tests run under
// the Runtime Interface Emulator (built with aws-lambda-go). Tests control
// it through the event:
//
//   - a top-level "testfn" object in the event: {"testfn":{"mode":...}};
//   - otherwise the first record whose payload (SQS body, Kinesis data,
//     Kafka value, RabbitMQ data, DynamoDB NewImage, DocumentDB event's
//     fullDocument) is a JSON object with a "testfn" key;
//   - otherwise the environment variable TESTFN_MODE (default "echo").
//
// Directive fields: mode, ms (sleep duration), items (identifiers to report
// as failed), body (raw JSON to return), errorType, errorMessage, times and
// key (flaky).
//
// Modes:
//
//	echo        return the event unchanged
//	return      return "body" verbatim
//	error       return an error (errorType defaults to "testfnError")
//	panic       panic (RIE answers 502)
//	exit        os.Exit(3)
//	sleep       sleep ms milliseconds, then echo (past the function timeout: RIE "Task timed out")
//	fail-items  return {"batchItemFailures":[{"itemIdentifier":<each of items>}]}
//	fail-self   report every record whose payload carries mode fail-self as a failed item
//	window      return {"state":{"count":<state.count + number of records>}} (tumbling windows)
//	big         return a JSON string of ms bytes (oversized responses)
//	flaky       return an error for the first "times" invocations carrying
//	            this directive's "key" (counted in the runtime process, which
//	            RIE keeps between invocations), then echo
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambda/messages"
)

type directive struct {
	Mode         string          `json:"mode"`
	MS           int             `json:"ms"`
	Items        []string        `json:"items"`
	Body         json.RawMessage `json:"body"`
	ErrorType    string          `json:"errorType"`
	ErrorMessage string          `json:"errorMessage"`
	Times        int             `json:"times"`
	Key          string          `json:"key"`
}

// flaky counts the invocations of each flaky key.
var flaky = struct {
	sync.Mutex
	n map[string]int
}{n: map[string]int{}}

// record is the union of the record shapes testfn looks into.
type record struct {
	MessageID string `json:"messageId"`
	Body      string `json:"body"`
	Kinesis   *struct {
		Data           []byte `json:"data"`
		SequenceNumber string `json:"sequenceNumber"`
	} `json:"kinesis"`
	DynamoDB *struct {
		SequenceNumber string          `json:"SequenceNumber"`
		NewImage       json.RawMessage `json:"NewImage"`
	} `json:"dynamodb"`
	Value string `json:"value"`
	Data  string `json:"data"`
	Event *struct {
		FullDocument json.RawMessage `json:"fullDocument"`
	} `json:"event"`
}

func (r *record) id() string {
	switch {
	case r.Kinesis != nil:
		return r.Kinesis.SequenceNumber
	case r.DynamoDB != nil:
		return r.DynamoDB.SequenceNumber
	}
	return r.MessageID
}

func (r *record) payload() []byte {
	switch {
	case r.Kinesis != nil:
		return r.Kinesis.Data
	case r.DynamoDB != nil:
		return r.DynamoDB.NewImage
	case r.Event != nil:
		return r.Event.FullDocument
	case r.Body != "":
		return []byte(r.Body)
	case r.Value != "":
		b, _ := base64.StdEncoding.DecodeString(r.Value)
		return b
	case r.Data != "":
		b, _ := base64.StdEncoding.DecodeString(r.Data)
		return b
	}
	return nil
}

type event struct {
	TestFn  *directive                   `json:"testfn"`
	Records []record                     `json:"Records"`
	Kafka   map[string][]record          `json:"records"`
	RMQ     map[string][]record          `json:"rmqMessagesByQueue"`
	DocDB   []record                     `json:"events"`
	MQ      []record                     `json:"messages"`
	State   map[string]json.RawMessage   `json:"state"`
	Window  *struct{ Start, End string } `json:"window"`
}

func (e *event) records() []record {
	recs := e.Records
	for _, rs := range e.Kafka {
		recs = append(recs, rs...)
	}
	for _, rs := range e.RMQ {
		recs = append(recs, rs...)
	}
	recs = append(recs, e.MQ...)
	return append(recs, e.DocDB...)
}

func recordDirective(r *record) *directive {
	var p struct {
		TestFn *directive `json:"testfn"`
	}
	if json.Unmarshal(r.payload(), &p) == nil {
		return p.TestFn
	}
	return nil
}

func handle(_ context.Context, raw json.RawMessage) (json.RawMessage, error) {
	var ev event
	_ = json.Unmarshal(raw, &ev)
	d := ev.TestFn
	recs := ev.records()
	if d == nil {
		for i := range recs {
			if d = recordDirective(&recs[i]); d != nil {
				break
			}
		}
	}
	if d == nil {
		d = &directive{Mode: os.Getenv("TESTFN_MODE")}
	}
	switch d.Mode {
	case "", "echo":
		return raw, nil
	case "return":
		return d.Body, nil
	case "error":
		typ, msg := d.ErrorType, d.ErrorMessage
		if typ == "" {
			typ = "testfnError"
		}
		if msg == "" {
			msg = "testfn failed as asked"
		}
		// aws-lambda-go passes an InvokeResponse_Error through as is, so the
		// test chooses errorType.
		return nil, messages.InvokeResponse_Error{Message: msg, Type: typ}
	case "panic":
		panic("testfn panics as asked")
	case "exit":
		os.Exit(3)
	case "sleep":
		// Ignore the deadline: a function that overruns its timeout is
		// stopped by the runtime ("Task timed out"), not by itself.
		time.Sleep(time.Duration(d.MS) * time.Millisecond)
		return raw, nil
	case "fail-items":
		return failures(d.Items), nil
	case "fail-self":
		var ids []string
		for i := range recs {
			if rd := recordDirective(&recs[i]); rd != nil && rd.Mode == "fail-self" {
				ids = append(ids, recs[i].id())
			}
		}
		return failures(ids), nil
	case "window":
		var count int
		if c, ok := ev.State["count"]; ok {
			_ = json.Unmarshal(c, &count)
		}
		out, _ := json.Marshal(map[string]any{"state": map[string]int{"count": count + len(recs)}})
		return out, nil
	case "big":
		out, _ := json.Marshal(strings.Repeat("x", d.MS))
		return out, nil
	case "flaky":
		flaky.Lock()
		flaky.n[d.Key]++
		n := flaky.n[d.Key]
		flaky.Unlock()
		if n <= d.Times {
			return nil, messages.InvokeResponse_Error{Message: "testfn flaky failure", Type: "testfnFlaky"}
		}
		return raw, nil
	}
	return nil, errors.New("testfn: unknown mode " + d.Mode)
}

func failures(ids []string) json.RawMessage {
	type item struct {
		ItemIdentifier string `json:"itemIdentifier"`
	}
	resp := struct {
		BatchItemFailures []item `json:"batchItemFailures"`
	}{BatchItemFailures: []item{}}
	for _, id := range ids {
		resp.BatchItemFailures = append(resp.BatchItemFailures, item{id})
	}
	out, _ := json.Marshal(resp)
	return out
}

func main() { lambda.Start(handle) }
