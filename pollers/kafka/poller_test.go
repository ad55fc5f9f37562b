package kafka

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/payload"
	"github.com/esmd/esmd/source"
)

// TestRecordShape checks the records against aws-lambda-go's KafkaEvent:
// key and value in base64, headers as signed bytes (repeated keys kept),
// millisecond timestamps, a keyless record without "key", and the
// topic-partition keys of the event's records map.
func TestRecordShape(t *testing.T) {
	s := seeds(t)
	topic := newTopic(t, s, 2)
	prod := client(t, s, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ts := time.UnixMilli(1749116692330)
	produce(t, prod,
		&kgo.Record{Key: []byte("k1"), Value: []byte(`{"a":1}`), Timestamp: ts, Partition: 1,
			Headers: []kgo.RecordHeader{{Key: "h", Value: []byte("v")}, {Key: "e", Value: []byte("ë")}, {Key: "h", Value: []byte("w")}}},
		&kgo.Record{Value: []byte("keyless"), Timestamp: ts, Partition: 1},
	)
	p := open(t, Config{Seeds: s, Topics: []string{topic}, Group: topic + ".g"})
	defer p.Close()
	recs := pollN(t, p, 2, 20*time.Second)

	m := &esm.Mapping{Source: esm.SourceMSK, Config: esm.Config{EventSourceArn: ptr("arn:aws:kafka:us-east-1:000000000000:cluster/c/1")}}
	b := payload.NewBuilder(envelope(m))
	for _, r := range recs {
		if r.Data != nil || r.Encoder == nil || r.Len() != len(r.Bytes()) {
			t.Errorf("record %s: Data %q, Encoder %v, Len %d, encoded %d bytes: want encoded on demand with its exact Len",
				r.ID, r.Data, r.Encoder, r.Len(), len(r.Bytes()))
		}
		r.AddTo(b)
	}
	var ev events.KafkaEvent
	if err := json.Unmarshal(b.Bytes(), &ev); err != nil {
		t.Fatalf("event does not decode as events.KafkaEvent: %v\n%s", err, b.Bytes())
	}
	if ev.EventSource != "aws:kafka" || ev.EventSourceARN != *m.Config.EventSourceArn {
		t.Errorf("envelope: %q %q", ev.EventSource, ev.EventSourceARN)
	}
	lane := topic + "-1"
	got := ev.Records[lane]
	if len(ev.Records) != 1 || len(got) != 2 {
		t.Fatalf("records map: %v", ev.Records)
	}
	r0, r1 := got[0], got[1]
	if r0.Topic != topic || r0.Partition != 1 || r0.Offset != 0 || r1.Offset != 1 {
		t.Errorf("position: %+v %+v", r0, r1)
	}
	if r0.Timestamp.UnixMilli() != ts.UnixMilli() || r0.TimestampType != "CREATE_TIME" {
		t.Errorf("timestamp %v %s", r0.Timestamp, r0.TimestampType)
	}
	if r0.Key != "azE=" || r0.Value != "eyJhIjoxfQ==" || r1.Value != "a2V5bGVzcw==" {
		t.Errorf("key/value: %q %q %q", r0.Key, r0.Value, r1.Value)
	}
	if len(r0.Headers) != 3 || string(r0.Headers[0]["h"]) != "v" || string(r0.Headers[1]["e"]) != "ë" || string(r0.Headers[2]["h"]) != "w" {
		t.Errorf("headers: %v", r0.Headers)
	}
	// Byte-exact: signed header bytes, no "key" for a keyless record.
	want0 := fmt.Sprintf(`{"topic":%q,"partition":1,"offset":0,"timestamp":1749116692330,"timestampType":"CREATE_TIME","key":"azE=","value":"eyJhIjoxfQ==","headers":[{"h":[118]},{"e":[-61,-85]},{"h":[119]}]}`, topic)
	want1 := fmt.Sprintf(`{"topic":%q,"partition":1,"offset":1,"timestamp":1749116692330,"timestampType":"CREATE_TIME","value":"a2V5bGVzcw==","headers":[]}`, topic)
	if string(recs[0].Bytes()) != want0 || string(recs[1].Bytes()) != want1 {
		t.Errorf("records:\n%s\n%s\nwant\n%s\n%s", recs[0].Bytes(), recs[1].Bytes(), want0, want1)
	}
	if recs[0].Lane != lane || recs[0].Group != lane || recs[0].Key != "k1" || recs[0].ID != "0" || recs[0].Seq != "0" || !recs[0].Arrival.Equal(ts) {
		t.Errorf("source fields: %+v", recs[0])
	}
}

func ptr[T any](v T) *T { return &v }

// committed returns the group's committed offset of a partition (-1: none).
func committed(t testing.TB, s []string, group, topic string, partition int32) int64 {
	t.Helper()
	cl := client(t, s)
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = group
	rt := kmsg.NewOffsetFetchRequestTopic()
	rt.Topic, rt.Partitions = topic, []int32{partition}
	req.Topics = append(req.Topics, rt)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range resp.Topics {
		for _, pp := range tp.Partitions {
			return pp.Offset
		}
	}
	return -1
}

// TestCommitBelowUnfinished finishes every record of a partition but one
// in the middle, out of order: the group's offset stops at that record, and
// a restarted poller reads from it (nothing lost, nothing skipped).
func TestCommitBelowUnfinished(t *testing.T) {
	s := seeds(t)
	topic := newTopic(t, s, 1)
	prod := client(t, s, kgo.DefaultProduceTopic(topic))
	for i := range 10 {
		produce(t, prod, &kgo.Record{Value: []byte(strconv.Itoa(i))})
	}
	group := topic + ".g"
	cfg := Config{Seeds: s, Topics: []string{topic}, Group: group}
	p := open(t, cfg)
	recs := pollN(t, p, 10, 20*time.Second)
	done := slices.Concat(recs[5:], recs[:4]) // all but offset 4, out of order
	if err := p.Done(context.Background(), done); err != nil {
		t.Fatal(err)
	}
	// The periodic commit, not only Close, carries the offset.
	testenv.Eventually(t, 10*time.Second, func(context.Context) error {
		if got := committed(t, s, group, topic, 0); got != 4 {
			return fmt.Errorf("committed offset %d, want 4", got)
		}
		return nil
	})
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if got := committed(t, s, group, topic, 0); got != 4 {
		t.Fatalf("committed offset after close %d, want 4", got)
	}
	p = open(t, cfg)
	again := pollN(t, p, 6, 20*time.Second)
	if again[0].ID != "4" {
		t.Fatalf("restart read from %s, want 4", again[0].ID)
	}
	if err := p.Done(context.Background(), again[:1]); err != nil {
		t.Fatal(err)
	}
	// The lag counts from the first unfinished record: 10 - 5.
	if lag := p.OffsetLag(); lag[topic+"-0"] != 5 {
		t.Errorf("OffsetLag %v, want 5", lag)
	}
	// Offsets 5..9 were read again under the new poller and are not done:
	// the offset moves only to 5.
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if got := committed(t, s, group, topic, 0); got != 5 {
		t.Fatalf("committed offset %d, want 5", got)
	}
}

// TestStartingPositions: TRIM_HORIZON reads the oldest record, LATEST only
// records written after the group started, AT_TIMESTAMP from the first
// record at or after the timestamp; and a group with committed offsets
// ignores StartingPosition (KAF-2).
func TestStartingPositions(t *testing.T) {
	s := seeds(t)
	topic := newTopic(t, s, 1)
	prod := client(t, s, kgo.DefaultProduceTopic(topic))
	now := time.Now()
	for i := range 5 {
		produce(t, prod, &kgo.Record{Value: []byte("old-" + strconv.Itoa(i)), Timestamp: now.Add(-time.Hour + time.Duration(i)*time.Minute)})
	}
	for i := range 5 {
		produce(t, prod, &kgo.Record{Value: []byte("new-" + strconv.Itoa(i)), Timestamp: now.Add(time.Duration(i) * time.Millisecond)})
	}
	t.Run("TRIM_HORIZON", func(t *testing.T) {
		p := open(t, Config{Seeds: s, Topics: []string{topic}, Group: topic + ".th"})
		defer p.Close()
		if r := pollN(t, p, 1, 20*time.Second); string(decode(t, r[0]).Value) != "old-0" {
			t.Fatalf("first record %s", decode(t, r[0]).Value)
		}
	})
	t.Run("AT_TIMESTAMP", func(t *testing.T) {
		p := open(t, Config{Seeds: s, Topics: []string{topic}, Group: topic + ".ts", StartingPosition: AtTimestamp, StartingTimestamp: now.Add(-time.Minute)})
		defer p.Close()
		if r := pollN(t, p, 1, 20*time.Second); string(decode(t, r[0]).Value) != "new-0" {
			t.Fatalf("first record %s", decode(t, r[0]).Value)
		}
	})
	t.Run("LATEST", func(t *testing.T) {
		group := topic + ".latest"
		p := open(t, Config{Seeds: s, Topics: []string{topic}, Group: group, StartingPosition: Latest})
		// The group's position is set when the partition is assigned,
		// which is not observable from outside: keep writing until a
		// record arrives, then check none of the old ones came.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		var got []source.Record
		for i := 0; len(got) == 0; i++ {
			produce(t, prod, &kgo.Record{Value: []byte("late-" + strconv.Itoa(i))})
			pctx, pcancel := context.WithTimeout(ctx, 100*time.Millisecond)
			got, _ = p.Poll(pctx)
			pcancel()
			if ctx.Err() != nil {
				t.Fatal("no record after 20s")
			}
		}
		for _, r := range got {
			if v := string(decode(t, r).Value); v[:5] != "late-" {
				t.Fatalf("LATEST delivered %s", v)
			}
		}
		if err := p.Done(context.Background(), got); err != nil {
			t.Fatal(err)
		}
		p.Close()
		// Committed offsets win over StartingPosition.
		p = open(t, Config{Seeds: s, Topics: []string{topic}, Group: group, StartingPosition: TrimHorizon})
		defer p.Close()
		produce(t, prod, &kgo.Record{Value: []byte("after")})
		for _, r := range pollN(t, p, 1, 20*time.Second) {
			if v := string(decode(t, r).Value); v[:4] == "old-" || v[:4] == "new-" {
				t.Fatalf("a group with commits restarted at %s", v)
			}
		}
	})
}

// TestRebalance runs two members of one group over a 4-partition topic:
// the second joins while the first is consuming, the partitions split
// between them, and every record is delivered (duplicates only for
// records in flight at the handover) in per-partition order.
func TestRebalance(t *testing.T) {
	s := seeds(t)
	topic := newTopic(t, s, 4)
	group := topic + ".g"
	const perPart = 200
	// Explicit partitions: the default partitioner would not spread keyless
	// records over all four in a short test.
	prod := client(t, s, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	write := func(from, to int) {
		var recs []*kgo.Record
		for i := from; i < to; i++ {
			for pt := range int32(4) {
				recs = append(recs, &kgo.Record{Partition: pt, Value: []byte(strconv.Itoa(i))})
			}
		}
		produce(t, prod, recs...)
	}
	write(0, perPart/2)

	type seen struct {
		mu    sync.Mutex
		lanes map[string][]int64
		ended []string // EndedLanes: partitions revoked from the member
	}
	var all [2]seen
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	consume := func(i int, p *Poller) {
		defer wg.Done()
		all[i].lanes = map[string][]int64{}
		for {
			recs, err := p.Poll(ctx)
			if err != nil {
				return
			}
			all[i].mu.Lock()
			for _, r := range recs {
				off, _ := strconv.ParseInt(r.Seq, 10, 64)
				all[i].lanes[r.Lane] = append(all[i].lanes[r.Lane], off)
			}
			all[i].ended = append(all[i].ended, p.EndedLanes()...)
			all[i].mu.Unlock()
			if i == 0 {
				// Processing time, so that the handover finds records
				// of member 1 in flight and waits for them.
				time.Sleep(5 * time.Millisecond)
			}
			if err := p.Done(ctx, recs); err != nil {
				t.Error(err)
				return
			}
		}
	}
	cfg := Config{Seeds: s, Topics: []string{topic}, Group: group}
	p1 := open(t, cfg)
	wg.Add(1)
	go consume(0, p1)
	sumCommitted := func() int64 {
		total := int64(0)
		for pt := range int32(4) {
			if c := committed(t, s, group, topic, pt); c > 0 {
				total += c
			}
		}
		return total
	}
	// Member 1 has read and committed the first half before member 2 joins,
	// so the join moves partitions from one member to the other.
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		if n := sumCommitted(); n != 4*perPart/2 {
			return fmt.Errorf("committed %d", n)
		}
		return nil
	})
	p2 := open(t, cfg)
	wg.Add(1)
	go consume(1, p2)
	owns := func(p *Poller) int {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.owned)
	}
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		if o1, o2 := owns(p1), owns(p2); o1 == 0 || o2 == 0 || o1+o2 != 4 {
			return fmt.Errorf("partitions owned: %d and %d", o1, o2)
		}
		return nil
	})
	write(perPart/2, perPart)

	// Wait until the group's commits cover every record.
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		if n := sumCommitted(); n != 4*perPart {
			return fmt.Errorf("committed %d of %d records", n, 4*perPart)
		}
		return nil
	})
	// The partitions that moved to member 2 ended for member 1
	// (source.LaneEnder), and only those.
	p2.mu.Lock()
	var moved []string
	for l := range p2.owned {
		moved = append(moved, l)
	}
	p2.mu.Unlock()
	all[0].mu.Lock()
	ended := slices.Clone(all[0].ended)
	all[0].mu.Unlock()
	slices.Sort(moved)
	slices.Sort(ended)
	if !slices.Equal(moved, ended) {
		t.Errorf("member 1 reported lanes %v ended, want the partitions member 2 took, %v", ended, moved)
	}
	cancel()
	wg.Wait()
	p1.Close()
	p2.Close()

	owners := map[string]int{}
	for i := range all {
		for lane, offs := range all[i].lanes {
			owners[lane]++
			// Per member and partition, offsets go up: a member never
			// saw a record before one it had already read.
			if !slices.IsSorted(offs) {
				t.Errorf("member %d, %s: offsets out of order", i+1, lane)
			}
		}
	}
	for pt := range 4 {
		lane := fmt.Sprintf("%s-%d", topic, pt)
		got := map[int64]bool{}
		for i := range all {
			for _, off := range all[i].lanes[lane] {
				got[off] = true
			}
		}
		for off := range int64(perPart) {
			if !got[off] {
				t.Fatalf("%s offset %d never delivered", lane, off)
			}
		}
	}
	if len(all[1].lanes) == 0 {
		t.Errorf("partitions did not split: member 1 %d, member 2 %d partitions", len(all[0].lanes), len(all[1].lanes))
	}
	handed := 0
	for _, c := range owners {
		if c > 1 {
			handed++
		}
	}
	if handed == 0 {
		t.Errorf("no partition moved from member 1 to member 2")
	}
}

// TestStarving: Poll fetches while a partition with room in the pipeline
// holds no records, whatever the other partitions hold; it stops only when
// no partition could take fetched records now.
func TestStarving(t *testing.T) {
	type pt struct {
		held, pending   int
		paused, revoked bool
		active          bool
	}
	tests := []struct {
		name       string
		maxPollers int
		active     int
		parts      []pt
		want       bool
	}{
		{"one full, one empty with room", 0, 0, []pt{{held: 5000, pending: 10}, {}}, true},
		{"empty one at its limit", 0, 0, []pt{{held: 5000}, {pending: 10}}, false},
		{"every one holds records", 0, 0, []pt{{held: 1, pending: 10}, {held: 1}}, false},
		{"empty one revoking", 0, 0, []pt{{held: 5000}, {revoked: true}}, false},
		{"empty one paused", 0, 0, []pt{{held: 5000}, {paused: true}}, false},
		{"no slot for the empty one", 1, 1, []pt{{held: 5000, active: true}, {}}, false},
		{"a free slot", 2, 1, []pt{{held: 5000, active: true}, {}}, true},
		{"empty active one", 1, 1, []pt{{held: 5000}, {active: true}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &Poller{cfg: Config{MaxOutstanding: 10, MaxPollers: tt.maxPollers}, tracker: source.NewTracker(), active: tt.active}
			for i, c := range tt.parts {
				part := &part{lane: "t-" + strconv.Itoa(i), paused: c.paused, revoking: c.revoked, active: c.active}
				part.held = make([]*kgo.Record, c.held)
				for o := range c.pending {
					p.tracker.AddOffsets(part.lane, int64(o))
				}
				p.order = append(p.order, part)
			}
			if got := p.starving(); got != tt.want {
				t.Fatalf("starving() = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestCommitAtOnce: the first mark that moves is committed at once, not
// one CommitInterval later (here an hour).
func TestCommitAtOnce(t *testing.T) {
	s := seeds(t)
	topic := newTopic(t, s, 1)
	prod := client(t, s, kgo.DefaultProduceTopic(topic))
	for i := range 3 {
		produce(t, prod, &kgo.Record{Value: []byte(strconv.Itoa(i))})
	}
	group := topic + ".g"
	p := open(t, Config{Seeds: s, Topics: []string{topic}, Group: group, CommitInterval: time.Hour})
	defer p.Close()
	recs := pollN(t, p, 3, 20*time.Second)
	if err := p.Done(context.Background(), recs[:2]); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func(context.Context) error {
		if got := committed(t, s, group, topic, 0); got != 2 {
			return fmt.Errorf("committed offset %d, want 2", got)
		}
		return nil
	})
}

// TestUncommittedBatches: Done lets a partition have up to
// uncommittedBatches finished batches uncommitted and asks for the commit
// of the oldest beyond that (markDone returns the mark Done then waits
// for); from half that many, the committer is told not to wait out
// commitGap. A commit trims the marks.
func TestUncommittedBatches(t *testing.T) {
	p := &Poller{owned: map[string]*part{}, tracker: source.NewTracker(), progress: make(chan struct{})}
	pt := &part{topic: "t", partition: 0, lane: "t-0", mark: -1, committed: -1, first: -1, highWater: -1}
	p.owned[pt.lane] = pt
	batch := func(off int64) []source.Record {
		p.tracker.AddOffsets(pt.lane, off)
		r := (*encoder)(&kgo.Record{Offset: off})
		return []source.Record{{Lane: pt.lane, Seq: strconv.FormatInt(off, 10), Encoder: r, Meta: pt}}
	}
	for off := range int64(uncommittedBatches) {
		moved, prev, err := p.markDone(batch(off))
		if !moved || err != nil || len(prev) != 0 {
			t.Fatalf("batch %d: moved %v, wait for %v, %v", off, moved, prev, err)
		}
		if urgent := p.urgent.Load(); urgent != (off+1 >= uncommittedBatches/2) {
			t.Fatalf("batch %d: urgent %v with %d uncommitted", off, urgent, off+1)
		}
	}
	// One more: Done must wait for the first batch's mark (offset 0 done:
	// mark 1) to be committed.
	_, prev, _ := p.markDone(batch(uncommittedBatches))
	if len(prev) != 1 || prev[0].pt != pt || prev[0].mark != 1 {
		t.Fatalf("batch %d: wait for %v, want mark 1", uncommittedBatches, prev)
	}
	// The committer committed marks up to 6 meanwhile: the next batch
	// finds marks 7..9 uncommitted besides its own 10, and waits for none.
	pt.committed = 6
	p.urgent.Store(false)
	if _, prev, _ := p.markDone(batch(uncommittedBatches + 1)); len(prev) != 0 || !slices.Equal(pt.marks, []int64{7, 8, 9, 10}) {
		t.Fatalf("after a commit: wait for %v, %d marks %v", prev, len(pt.marks), pt.marks)
	}
	// A record the filter encoded (no Encoder) is found by its Seq.
	p.tracker.AddOffsets(pt.lane, 10)
	if moved, _, err := p.markDone([]source.Record{{Lane: pt.lane, Seq: "10", Data: []byte(`{}`), Meta: pt}}); !moved || err != nil || pt.mark != 11 {
		t.Fatalf("filtered record: moved %v, mark %d, %v", moved, pt.mark, err)
	}
}

// commitCounter counts the OffsetCommit requests a client writes.
type commitCounter struct{ n atomic.Int64 }

func (c *commitCounter) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if key == kmsg.OffsetCommit.Int16() && err == nil {
		c.n.Add(1)
	}
}

// TestCommitsCoalesce: batches finishing back to back share commits (one
// OffsetCommit for many Dones), and the last is committed without waiting
// for CommitInterval (an hour here).
func TestCommitsCoalesce(t *testing.T) {
	s := seeds(t)
	topic := newTopic(t, s, 1)
	prod := client(t, s, kgo.DefaultProduceTopic(topic))
	const n = 40
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, &kgo.Record{Value: []byte(strconv.Itoa(i))})
	}
	produce(t, prod, recs...)
	var commits commitCounter
	group := topic + ".g"
	p := open(t, Config{Seeds: s, Topics: []string{topic}, Group: group, CommitInterval: time.Hour,
		ClientOpts: []kgo.Opt{kgo.WithHooks(&commits)}})
	defer p.Close()
	got := pollN(t, p, n, 20*time.Second)
	for i := range got {
		if err := p.Done(context.Background(), got[i:i+1]); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 10*time.Second, func(context.Context) error {
		if off := committed(t, s, group, topic, 0); off != n {
			return fmt.Errorf("committed offset %d, want %d", off, n)
		}
		return nil
	})
	if c := commits.n.Load(); c >= n/2 {
		t.Fatalf("%d OffsetCommit requests for %d batches done back to back", c, n)
	} else {
		t.Logf("%d OffsetCommit requests for %d batches", c, n)
	}
}
