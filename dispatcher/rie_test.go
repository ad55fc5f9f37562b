package dispatcher

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/payload"
	"github.com/google/go-cmp/cmp"
)

// rieInvoker returns a ModeRIE invoker for the package's RIE running
// internal/testfn.
func rieInvoker(t *testing.T, opts ...Option) *LambdaInvoker {
	t.Helper()
	inv, err := NewLambdaInvoker(testenv.AWSConfig(testenv.RIE(t)), append([]Option{WithMode(ModeRIE), WithTimeout(30 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(inv.Close)
	return inv
}

func kinesisEvent(t *testing.T, datas ...string) ([]byte, []string) {
	t.Helper()
	b := payload.NewBuilder(payload.Records(""))
	var ids []string
	for i, d := range datas {
		seq := fmt.Sprintf("4959033827149025660855969253836157109592157598913658%04d", i)
		ids = append(ids, seq)
		b.Add("", payload.AppendKinesis(nil, &payload.KinesisRecord{
			ShardID: "shardId-000000000000", PartitionKey: "pk", SequenceNumber: seq, Data: []byte(d),
			ApproximateArrivalTimestamp: time.UnixMilli(1700000000000 + int64(i)),
			InvokeIdentityArn:           "arn:aws:iam::000000000000:role/r", AWSRegion: "us-east-1",
			EventSourceARN: "arn:aws:kinesis:us-east-1:000000000000:stream/s",
		}))
	}
	return b.Bytes(), ids
}

// TestRIE runs the invoker against the real Lambda runtime (RIE +
// aws-lambda-go). The subtests run one after another: RIE takes one
// invocation at a time.
func TestRIE(t *testing.T) { eachPath(t, testRIE) }

func testRIE(t *testing.T, path Option) {
	inv := rieInvoker(t, path)
	ctx := context.Background()
	invoke := func(t *testing.T, ev []byte) Result {
		t.Helper()
		res, err := inv.Invoke(ctx, "arn:aws:lambda:us-east-1:000000000000:function:ignored", ev)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}

	t.Run("echo round trip", func(t *testing.T) {
		ev, _ := kinesisEvent(t, "hello", `{"k":"v"}`, "\u00eb\n")
		res := invoke(t, ev)
		if res.Failed() || res.StatusCode != 200 || res.ExecutedVersion != "$LATEST" {
			t.Fatalf("%+v", res)
		}
		// The function saw (and echoed) the same JSON value.
		var a, b any
		if err := json.Unmarshal(ev, &a); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(res.Payload, &b); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(a, b); diff != "" {
			t.Errorf("echo differs (-sent +echoed)\n%s", diff)
		}
	})
	t.Run("echo every golden event", func(t *testing.T) {
		files, err := filepath.Glob("../testdata/payload/*.json")
		if err != nil || len(files) == 0 {
			t.Fatal("no golden events", err)
		}
		for _, f := range files {
			ev, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			res := invoke(t, ev)
			var a, b any
			if err := json.Unmarshal(ev, &a); err != nil {
				t.Fatal(err)
			}
			if res.Failed() || json.Unmarshal(res.Payload, &b) != nil {
				t.Fatalf("%s: %+v", f, res)
			}
			if diff := cmp.Diff(a, b); diff != "" {
				t.Errorf("%s: echo differs (-sent +echoed)\n%s", f, diff)
			}
		}
	})
	t.Run("handler error", func(t *testing.T) {
		res := invoke(t, []byte(`{"testfn":{"mode":"error","errorType":"customErr","errorMessage":"batch item failed"}}`))
		want := Result{StatusCode: 200, FunctionError: "Unhandled", ErrorType: "customErr", ExecutedVersion: "$LATEST",
			Payload: []byte(`{"errorMessage":"batch item failed","errorType":"customErr"}`)}
		if diff := cmp.Diff(want, res); diff != "" {
			t.Errorf("(-want +got)\n%s", diff)
		}
	})
	t.Run("error directive inside a record", func(t *testing.T) {
		ev, _ := kinesisEvent(t, "ok", `{"testfn":{"mode":"error"}}`)
		if res := invoke(t, ev); res.FunctionError != "Unhandled" || res.ErrorType != "testfnError" {
			t.Errorf("%+v", res)
		}
	})
	t.Run("panic", func(t *testing.T) {
		if res := invoke(t, []byte(`{"testfn":{"mode":"panic"}}`)); res.FunctionError != "Unhandled" || res.StatusCode != 200 {
			t.Errorf("%+v", res)
		}
		// The runtime restarts on the next invocation.
		if res := invoke(t, []byte(`{"after":"panic"}`)); res.Failed() || string(res.Payload) != `{"after":"panic"}` {
			t.Errorf("after panic: %+v", res)
		}
	})
	t.Run("exit", func(t *testing.T) {
		if res := invoke(t, []byte(`{"testfn":{"mode":"exit"}}`)); res.FunctionError != "Unhandled" {
			t.Errorf("%+v", res)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		ms := int((testenv.RIEFunctionTimeout + time.Second) / time.Millisecond)
		res := invoke(t, []byte(fmt.Sprintf(`{"testfn":{"mode":"sleep","ms":%d}}`, ms)))
		if res.FunctionError != "Unhandled" || res.ErrorType != "Sandbox.Timedout" || !strings.HasPrefix(string(res.Payload), "Task timed out") {
			t.Errorf("%+v %s", res, res.Payload)
		}
		if res := invoke(t, []byte(`{"after":"timeout"}`)); res.Failed() {
			t.Errorf("after timeout: %+v", res)
		}
	})
	t.Run("partial batch response", func(t *testing.T) {
		ev, ids := kinesisEvent(t, "a", `{"testfn":{"mode":"fail-self"}}`, "c", `{"testfn":{"mode":"fail-self"}}`)
		res := invoke(t, ev)
		if res.Failed() {
			t.Fatalf("%+v", res)
		}
		failed, err := ParseBatchResponse(res.Payload, ids)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{ids[1], ids[3]}, failed); diff != "" {
			t.Errorf("(-want +got)\n%s", diff)
		}
	})
	t.Run("success forms", func(t *testing.T) {
		for _, body := range []string{`""`, `[]`, `null`, `{}`, `{"batchItemFailures":[]}`, `{"batchItemFailures":null}`} {
			res := invoke(t, []byte(`{"testfn":{"mode":"return","body":`+body+`}}`))
			failed, err := ParseBatchResponse(res.Payload, []string{"1"})
			if res.Failed() || err != nil || failed != nil {
				t.Errorf("%s: %+v %v %v", body, res, failed, err)
			}
		}
	})
	t.Run("failure forms", func(t *testing.T) {
		for _, body := range []string{`{"batchItemFailures":[{"itemIdentifier":"2"}]}`, `{"batchItemFailures":[{"itemIdentifier":""}]}`,
			`{"batchItemFailures":[{"itemIdentifier":null}]}`, `{"batchItemFailures":[{"foo":"notvalid"}]}`, `{"batchItemFailures":[{"foo":null}]}`} {
			res := invoke(t, []byte(`{"testfn":{"mode":"return","body":`+body+`}}`))
			if _, err := ParseBatchResponse(res.Payload, []string{"1"}); err == nil {
				t.Errorf("%s: parsed as valid", body)
			}
		}
	})
	t.Run("tumbling window state", func(t *testing.T) {
		env := payload.StreamRecords("arn:aws:kinesis:us-east-1:000000000000:stream/s")
		env.Window = &payload.Window{Start: time.Unix(0, 0), End: time.Unix(60, 0), ShardID: "shardId-000000000000"}
		var state json.RawMessage
		for range 3 {
			env.Window.State = state
			b := payload.NewBuilder(env)
			b.Add("", []byte(`{"testfn":{"mode":"window"}}`))
			b.Add("", []byte(`{}`))
			ev := append([]byte(`{"testfn":{"mode":"window"},`), b.Bytes()[1:]...)
			res := invoke(t, ev)
			st, _, err := ParseWindowResponse(res.Payload, nil)
			if err != nil {
				t.Fatal(err, string(res.Payload))
			}
			state = st
		}
		if string(state) != `{"count":6}` {
			t.Errorf("state after 3 invocations: %s", state)
		}
		// Echo has no state: a failed window invocation.
		res := invoke(t, []byte(`{"Records":[],"window":{}}`))
		if _, _, err := ParseWindowResponse(res.Payload, nil); err != ErrMissingState {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("concurrent callers are serialized", func(t *testing.T) {
		// A second concurrent invocation would crash RIE; the invoker
		// queues them.
		var wg sync.WaitGroup
		for i := range 6 {
			wg.Go(func() {
				body := fmt.Sprintf(`{"testfn":{"mode":"sleep","ms":30},"i":%d}`, i)
				res, err := inv.Invoke(ctx, "x", []byte(body))
				if err != nil || res.Failed() || string(res.Payload) != body {
					t.Errorf("%d: %+v %v", i, res, err)
				}
			})
		}
		wg.Wait()
	})
}
