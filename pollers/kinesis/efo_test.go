package kinesis_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/pollers/kinesis"
	"github.com/esmd/esmd/pollers/stream"
)

// eventFrame encodes one event stream message (string headers only).
func eventFrame(headers [][2]string, payload []byte) []byte {
	var h bytes.Buffer
	for _, kv := range headers {
		h.WriteByte(byte(len(kv[0])))
		h.WriteString(kv[0])
		h.WriteByte(7) // string
		binary.Write(&h, binary.BigEndian, uint16(len(kv[1])))
		h.WriteString(kv[1])
	}
	total := 12 + h.Len() + len(payload) + 4
	buf := binary.BigEndian.AppendUint32(nil, uint32(total))
	buf = binary.BigEndian.AppendUint32(buf, uint32(h.Len()))
	buf = binary.BigEndian.AppendUint32(buf, crc32.ChecksumIEEE(buf))
	buf = append(buf, h.Bytes()...)
	buf = append(buf, payload...)
	return binary.BigEndian.AppendUint32(buf, crc32.ChecksumIEEE(buf))
}

// efoProxy is kinesis-local behind a proxy that counts calls by operation
// and completes SubscribeToShard: kinesis-local streams the events but not
// the initial-response event real Kinesis sends first, without which the
// SDK refuses the stream.
type efoProxy struct {
	URL   string
	mu    sync.Mutex
	calls map[string]int
}

func (p *efoProxy) count(op string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls[op]
}

func newEFOProxy(t *testing.T, target string) *efoProxy {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &efoProxy{calls: map[string]int{}}
	initial := eventFrame([][2]string{{":message-type", "event"}, {":event-type", "initial-response"}, {":content-type", "application/json"}}, []byte("{}"))
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1 // events as they come
	rp.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, err error) {
		http.Error(w, err.Error(), http.StatusBadGateway)
	}
	rp.ModifyResponse = func(resp *http.Response) error {
		op := resp.Request.Header.Get("X-Amz-Target")
		p.mu.Lock()
		p.calls[op]++
		p.mu.Unlock()
		if op == "Kinesis_20131202.SubscribeToShard" && resp.StatusCode == http.StatusOK {
			body := resp.Body
			resp.Body = struct {
				io.Reader
				io.Closer
			}{io.MultiReader(bytes.NewReader(initial), body), body}
			resp.ContentLength = -1
			resp.Header.Del("Content-Length")
		}
		return nil
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

// newConsumer registers a stream consumer and waits until it is ACTIVE.
func newConsumer(t *testing.T, c *awskinesis.Client, arn string) string {
	t.Helper()
	rc, err := c.RegisterStreamConsumer(context.Background(), &awskinesis.RegisterStreamConsumerInput{StreamARN: &arn, ConsumerName: aws.String("esmd")})
	if err != nil {
		t.Fatal(err)
	}
	consumer := aws.ToString(rc.Consumer.ConsumerARN)
	testenv.Eventually(t, 20*time.Second, func(ctx context.Context) error {
		d, err := c.DescribeStreamConsumer(ctx, &awskinesis.DescribeStreamConsumerInput{ConsumerARN: &consumer})
		if err != nil {
			return err
		}
		if s := d.ConsumerDescription.ConsumerStatus; s != types.ConsumerStatusActive {
			return fmt.Errorf("consumer %s", s)
		}
		return nil
	})
	return consumer
}

// A mapping on a registered consumer reads with SubscribeToShard
// (enhanced fan-out), checkpoints as with GetRecords, and a new poller
// resumes after the checkpoint.
func TestEnhancedFanOut(t *testing.T) {
	proxy := newEFOProxy(t, testenv.Kinesis(t))
	c := awskinesis.NewFromConfig(testenv.AWSConfig(proxy.URL))
	name, arn := newStream(t, c, 1)
	ctx := context.Background()
	consumer := newConsumer(t, c, arn)
	for i := range 5 {
		put(t, c, name, "k", fmt.Sprintf("r%d", i))
	}
	st := openStore(t)
	p := open(t, c, kinesis.Config{Common: stream.Common{StreamARN: consumer, Positions: st}})
	got := pollN(t, p, 5, 20*time.Second)
	for i, r := range got {
		if want := fmt.Sprintf("r%d", i); body(t, r) != want {
			t.Fatalf("record %d is %s, want %s", i, body(t, r), want)
		}
	}
	var e event
	if err := json.Unmarshal(got[0].Bytes(), &e); err != nil || e.EventSourceARN != arn {
		t.Fatalf("eventSourceARN %q (%v), want the stream's %s", e.EventSourceARN, err, arn)
	}
	if err := p.Done(ctx, got[:3]); err != nil {
		t.Fatal(err)
	}
	p.Close()
	if n := proxy.count("Kinesis_20131202.SubscribeToShard"); n == 0 || proxy.count("Kinesis_20131202.GetRecords") != 0 {
		t.Fatalf("%d SubscribeToShard and %d GetRecords calls", n, proxy.count("Kinesis_20131202.GetRecords"))
	}

	put(t, c, name, "k", "r5")
	p = open(t, c, kinesis.Config{Common: stream.Common{StreamARN: consumer, Positions: st}})
	var again []string
	testenv.Eventually(t, 20*time.Second, func(context.Context) error {
		pctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		recs, err := p.Poll(pctx)
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		for _, r := range recs {
			again = append(again, body(t, r))
		}
		if len(again) < 3 {
			return fmt.Errorf("after the restart: %v", again)
		}
		return nil
	})
	if fmt.Sprint(again) != "[r3 r4 r5]" {
		t.Fatalf("after the restart got %v, want [r3 r4 r5]", again)
	}
}

// A split while a consumer reads: the parent's subscription ends (on
// Kinesis with its child shards; kinesis-mock never says so, and the end
// of a shard listed as closed is then checked with GetRecords), the parent is checkpointed at ShardEnd once its records
// are done, and only then are the children read.
func TestEnhancedFanOutSplit(t *testing.T) {
	proxy := newEFOProxy(t, testenv.Kinesis(t))
	c := awskinesis.NewFromConfig(testenv.AWSConfig(proxy.URL))
	name, arn := newStream(t, c, 1)
	consumer := newConsumer(t, c, arn)
	ctx := context.Background()
	keys := []string{"k0", "k1", "k2", "k3"}
	for i, k := range keys {
		put(t, c, name, k, fmt.Sprintf("a-%d", i))
	}
	st := openStore(t)
	p := open(t, c, kinesis.Config{Common: stream.Common{StreamARN: consumer, Positions: st}})
	parentRecs := pollN(t, p, len(keys), 20*time.Second)
	parent := parentRecs[0].Lane
	if _, err := c.SplitShard(ctx, &awskinesis.SplitShardInput{StreamName: &name, ShardToSplit: &parent,
		NewStartingHashKey: aws.String("170141183460469231731687303715884105728")}); err != nil {
		t.Fatal(err)
	}
	waitActive(t, c, name)
	for i, k := range keys {
		put(t, c, name, k, fmt.Sprintf("b-%d", i))
	}
	// The children are listed (every 300 ms) but wait for the parent's
	// records: nothing comes during 1 s, three listings.
	pollNone(t, p, time.Second)
	if err := p.Done(ctx, parentRecs); err != nil {
		t.Fatal(err)
	}
	childRecs := pollN(t, p, len(keys), 30*time.Second)
	if l := lanes(childRecs); len(l) != 2 || l[0] == parent || l[1] == parent {
		t.Fatalf("child records on lanes %v (parent %s)", l, parent)
	}
	if pos, _, _ := st.Position(ctx, "mapping-1", parent); pos != kinesis.ShardEnd {
		t.Fatalf("parent checkpoint %q, want %s", pos, kinesis.ShardEnd)
	}
	if n := proxy.count("Kinesis_20131202.SubscribeToShard"); n < 3 {
		t.Fatalf("%d SubscribeToShard calls, want at least 3 (parent, children)", n)
	}
}
