package kinesis_test

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/pollers/kinesis"
	"github.com/esmd/esmd/pollers/stream"
	"github.com/esmd/esmd/source"
)

func waitActive(t *testing.T, c *awskinesis.Client, name string) {
	t.Helper()
	testenv.Eventually(t, 20*time.Second, func(ctx context.Context) error {
		d, err := c.DescribeStreamSummary(ctx, &awskinesis.DescribeStreamSummaryInput{StreamName: &name})
		if err != nil {
			return err
		}
		if d.StreamDescriptionSummary.StreamStatus != types.StreamStatusActive {
			return fmt.Errorf("stream %s", d.StreamDescriptionSummary.StreamStatus)
		}
		return nil
	})
}

func lanes(recs []source.Record) []string {
	m := map[string]bool{}
	for _, r := range recs {
		m[r.Lane] = true
	}
	var out []string
	for l := range m {
		out = append(out, l)
	}
	sort.Strings(out)
	return out
}

// A split and then a merge during consumption: children start only after
// their parents are read to the end and every parent record is done, the
// parent's checkpoint becomes ShardEnd, and per-key order holds across the
// lineage.
func TestReshardParentBeforeChild(t *testing.T) {
	c := client(t)
	name, arn := newStream(t, c, 1)
	st := openStore(t)
	ctx := context.Background()
	keys := []string{"k0", "k1", "k2", "k3", "k4", "k5"}
	for i, k := range keys {
		put(t, c, name, k, fmt.Sprintf("a-%d", i))
	}
	p := open(t, c, kinesis.Config{Common: stream.Common{StreamARN: arn, Positions: st}})
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
	childRecs := pollN(t, p, len(keys), 20*time.Second)
	children := lanes(childRecs)
	if len(children) != 2 || children[0] == parent || children[1] == parent {
		t.Fatalf("child records on lanes %v (parent %s)", children, parent)
	}
	testenv.Eventually(t, 5*time.Second, func(ctx context.Context) error {
		if pos, _, _ := st.Position(ctx, "mapping-1", parent); pos != kinesis.ShardEnd {
			return fmt.Errorf("parent checkpoint %q", pos)
		}
		return nil
	})

	// Merge the two children back: the merged shard waits for both.
	if _, err := c.MergeShards(ctx, &awskinesis.MergeShardsInput{StreamName: &name, ShardToMerge: &children[0], AdjacentShardToMerge: &children[1]}); err != nil {
		t.Fatal(err)
	}
	waitActive(t, c, name)
	for i, k := range keys {
		put(t, c, name, k, fmt.Sprintf("c-%d", i))
	}
	// One child's records done, the other's not: still nothing.
	var first, second []source.Record
	for _, r := range childRecs {
		if r.Lane == children[0] {
			first = append(first, r)
		} else {
			second = append(second, r)
		}
	}
	if err := p.Done(ctx, first); err != nil {
		t.Fatal(err)
	}
	// The merged shard is listed (every 300 ms) but waits for both
	// parents: nothing comes during 1 s, three listings.
	pollNone(t, p, time.Second)
	if err := p.Done(ctx, second); err != nil {
		t.Fatal(err)
	}
	merged := pollN(t, p, len(keys), 20*time.Second)
	if l := lanes(merged); len(l) != 1 || l[0] == children[0] || l[0] == children[1] || l[0] == parent {
		t.Fatalf("merged records on lanes %v", l)
	}
	// Per key: a, then b, then c.
	all := append(append(append([]source.Record{}, parentRecs...), childRecs...), merged...)
	seen := map[string]string{}
	for _, r := range all {
		b := body(t, r)
		if prev := seen[r.Key]; prev != "" && prev[0] >= b[0] {
			t.Fatalf("key %s: %s after %s", r.Key, b, prev)
		}
		seen[r.Key] = b
	}
	if err := p.Done(ctx, merged); err != nil {
		t.Fatal(err)
	}
	// A restart skips the finished shards and resumes the merged one.
	p.Close()
	put(t, c, name, "k0", "d-0")
	p = open(t, c, kinesis.Config{Common: stream.Common{StreamARN: arn, Positions: st}})
	got := pollN(t, p, 1, 20*time.Second)
	if len(got) != 1 || body(t, got[0]) != "d-0" {
		t.Fatalf("after restart got %d records, first %s", len(got), body(t, got[0]))
	}
}

// LATEST on a stream split before the mapping starts: the children's old
// records are not read (they are not "new" shards), only what comes after.
func TestLatestAfterEarlierSplit(t *testing.T) {
	c := client(t)
	name, arn := newStream(t, c, 1)
	ctx := context.Background()
	if _, err := c.SplitShard(ctx, &awskinesis.SplitShardInput{StreamName: &name, ShardToSplit: aws.String("shardId-000000000000"),
		NewStartingHashKey: aws.String("170141183460469231731687303715884105728")}); err != nil {
		t.Fatal(err)
	}
	waitActive(t, c, name)
	put(t, c, name, "k", "old")
	p := open(t, c, kinesis.Config{Common: stream.Common{StreamARN: arn, Positions: openStore(t), StartingPosition: "LATEST"}})
	testenv.Eventually(t, 10*time.Second, func(context.Context) error {
		if n := len(p.Lag()); n != 2 {
			return fmt.Errorf("%d open shards read", n)
		}
		return nil
	})
	put(t, c, name, "k", "new")
	got := pollN(t, p, 1, 20*time.Second)
	if b := body(t, got[0]); b != "new" {
		t.Fatalf("got %s, want new", b)
	}
}
