package dispatcher

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/esmd/esmd/payload"
)

// BenchmarkDispatch measures the dispatcher's overhead per batch: SigV4
// signing, the HTTP round trip over loopback, response reading and
// ParseBatchResponse, against a no-op endpoint that discards the request
// and answers {"batchItemFailures":[]}. Batches of 100 Kinesis records of
// 1 KB (a 139 KB event). Reports ns and allocations per record.
func BenchmarkDispatch(b *testing.B) {
	for _, p := range paths {
		for _, signed := range []bool{true, false} {
			name := p.name + "/signed"
			if !signed {
				name = p.name + "/unsigned-payload"
			}
			for _, n := range []int{1, 100, 1000} {
				b.Run(name+"/records="+strconv.Itoa(n), func(b *testing.B) { benchDispatch(b, n, p.opt, WithUnsignedPayload(!signed)) })
			}
		}
	}
}

// BenchmarkDispatchInProcess is BenchmarkDispatch with the endpoint as an
// in-process http.RoundTripper (no sockets, no server): the dispatcher's own
// cost per batch.
func BenchmarkDispatchInProcess(b *testing.B) {
	for _, p := range paths {
		for _, signed := range []bool{true, false} {
			name := p.name + "/signed"
			if !signed {
				name = p.name + "/unsigned-payload"
			}
			for _, n := range []int{1, 100, 1000} {
				b.Run(name+"/records="+strconv.Itoa(n), func(b *testing.B) {
					benchDispatch(b, n, p.opt, WithUnsignedPayload(!signed), WithHTTPClient(&http.Client{Transport: noopEndpoint{}}))
				})
			}
		}
	}
}

// noopEndpoint answers every Invoke with {"batchItemFailures":[]} after
// reading the request body.
type noopEndpoint struct{}

func (noopEndpoint) RoundTrip(r *http.Request) (*http.Response, error) {
	io.Copy(io.Discard, r.Body)
	r.Body.Close()
	body := `{"batchItemFailures":[]}`
	return &http.Response{StatusCode: 200, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"X-Amz-Executed-Version": {"$LATEST"}, "Content-Type": {"application/json"}},
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)), Request: r}, nil
}

func benchDispatch(b *testing.B, n int, opts ...Option) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Amz-Executed-Version", "$LATEST")
		w.Write([]byte(`{"batchItemFailures":[]}`))
	}))
	defer srv.Close()
	inv := newInvoker(b, srv.URL, opts...)
	data := make([]byte, 1024)
	for i := range data {
		data[i] = 'a' + byte(i%26)
	}
	builder := payload.NewBuilder(payload.Records(""))
	ids := make([]string, n)
	for i := range n {
		ids[i] = "49590338271490256608559692538361571095921575989136" + strconv.Itoa(100000+i)
		builder.Add("", payload.AppendKinesis(nil, &payload.KinesisRecord{ShardID: "shardId-000000000000", PartitionKey: "pk",
			SequenceNumber: ids[i], Data: data, ApproximateArrivalTimestamp: time.UnixMilli(1700000000123),
			InvokeIdentityArn: "arn:aws:iam::123456789012:role/r", AWSRegion: "us-east-1",
			EventSourceARN: "arn:aws:kinesis:us-east-1:123456789012:stream/s"}))
	}
	event := builder.Bytes()
	ctx := context.Background()
	b.SetBytes(int64(len(event)))
	b.ReportAllocs()
	for b.Loop() {
		res, err := inv.Invoke(ctx, testARN, event)
		if err != nil || res.Failed() {
			b.Fatal(res, err)
		}
		if failed, err := ParseBatchResponse(res.Payload, ids); err != nil || failed != nil {
			b.Fatal(failed, err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
}
