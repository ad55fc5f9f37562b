package kafka

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/pollers/pollertest"
	"github.com/esmd/esmd/source"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// seeds returns the brokers the tests use: ESMD_KAFKA_SEEDS
// (host:port,...) to run against a real cluster, else the package's kfake.
func seeds(t testing.TB) []string {
	t.Helper()
	if s := os.Getenv("ESMD_KAFKA_SEEDS"); s != "" {
		testenv.Skip(t)
		return strings.Split(s, ",")
	}
	return testenv.Kafka(t)
}

var topicSeq atomic.Int64

// newTopic creates a fresh topic named after the test.
func newTopic(t testing.TB, seeds []string, partitions int32, opts ...kgo.Opt) string {
	t.Helper()
	name := strings.NewReplacer("/", ".", " ", "_").Replace(t.Name())
	name = fmt.Sprintf("%s.%d.%d", name, time.Now().UnixNano()%1e6, topicSeq.Add(1))
	cl := client(t, seeds, opts...)
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = name, partitions, 1
	req.Topics = append(req.Topics, rt)
	req.TimeoutMillis = 10000
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("create topic: %v", err)
	}
	if err := kerr.ErrorForCode(resp.Topics[0].ErrorCode); err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	return name
}

// client returns a plain kgo client (producer, admin) closed at cleanup.
func client(t testing.TB, seeds []string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(seeds...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func produce(t testing.TB, cl *kgo.Client, recs ...*kgo.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// open starts a poller for tests, with short intervals.
func open(t testing.TB, cfg Config) *Poller {
	t.Helper()
	if cfg.CommitInterval == 0 {
		cfg.CommitInterval = 50 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// wire is the Lambda Kafka record as the tests read it back.
type wire struct {
	Topic         string                       `json:"topic"`
	Partition     int32                        `json:"partition"`
	Offset        int64                        `json:"offset"`
	Timestamp     int64                        `json:"timestamp"`
	TimestampType string                       `json:"timestampType"`
	Key           *[]byte                      `json:"key"`
	Value         []byte                       `json:"value"`
	Headers       []map[string]json.RawMessage `json:"headers"`
}

func decode(t testing.TB, r source.Record) wire {
	t.Helper()
	var w wire
	if err := json.Unmarshal(r.Bytes(), &w); err != nil {
		t.Fatalf("record %s: %v: %s", r.ID, err, r.Bytes())
	}
	return w
}

func TestConformance(t *testing.T) {
	s := seeds(t)
	pollertest.Run(t, pollertest.Harness{
		Features: pollertest.Features{Ordered: true},
		Setup: func(t *testing.T) pollertest.Source {
			topic := newTopic(t, s, 3)
			prod := client(t, s, kgo.DefaultProduceTopic(topic))
			return pollertest.Source{
				Open: func(t *testing.T) source.Poller {
					return open(t, Config{Seeds: s, Topics: []string{topic}, Group: topic + ".group"})
				},
				Produce: func(t *testing.T, key, body string) {
					produce(t, prod, &kgo.Record{Key: []byte(key), Value: []byte(body)})
				},
				Body: func(t *testing.T, r source.Record) string { return string(decode(t, r).Value) },
			}
		},
	})
}

// pollN polls until n records arrived or the deadline passes.
func pollN(t testing.TB, p *Poller, n int, wait time.Duration) []source.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var out []source.Record
	for len(out) < n {
		recs, err := p.Poll(ctx)
		if err != nil {
			t.Fatalf("poll after %d of %d records: %v", len(out), n, err)
		}
		out = append(out, recs...)
	}
	return out
}
