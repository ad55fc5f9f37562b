package stream

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/esmd/esmd/esm"
)

type fakeShards []Shard

func (f fakeShards) Shards(context.Context) ([]Shard, error) { return f, nil }
func (fakeShards) Iterator(context.Context, string, Position) (string, error) {
	return "", nil
}
func (fakeShards) Read(context.Context, string, string, int) (Page, error) { return Page{}, nil }
func (fakeShards) Classify(error) ErrorKind                                { return Other }

type memPositions map[string]string

func (m memPositions) Position(_ context.Context, _, lane string) (string, bool, error) {
	p, ok := m[lane]
	return p, ok, nil
}
func (m memPositions) SetPosition(_ context.Context, _, lane, pos string) error {
	m[lane] = pos
	return nil
}
func (m memPositions) SetPositions(_ context.Context, _ string, ps map[string]string) error {
	for k, v := range ps {
		m[k] = v
	}
	return nil
}

// TestRewind checks the checkpoints a rewind writes for a resharded
// stream (a closed parent, two open children) and that a poller reads
// them back as the iterator positions they stand for.
func TestRewind(t *testing.T) {
	shards := fakeShards{{ID: "p", Closed: true}, {ID: "a", Parents: []string{"p"}}, {ID: "b", Parents: []string{"p"}}}
	ts := time.Unix(1767225600, 123456789)
	for _, tc := range []struct {
		to   esm.Position
		want map[string]string
		pos  Position
	}{
		{esm.Position{Type: esm.ReplayTrimHorizon}, map[string]string{"p": "TRIM_HORIZON", "a": "TRIM_HORIZON", "b": "TRIM_HORIZON"}, Position{Type: TrimHorizon}},
		{esm.Position{Type: esm.ReplayLatest}, map[string]string{"p": ShardEnd, "a": "LATEST", "b": "LATEST"}, Position{Type: Latest}},
		{esm.Position{Type: esm.ReplayAtTimestamp, Timestamp: ts}, map[string]string{"p": "AT_TIMESTAMP:1767225600123456789",
			"a": "AT_TIMESTAMP:1767225600123456789", "b": "AT_TIMESTAMP:1767225600123456789"}, Position{Type: AtTimestamp, Timestamp: ts}},
	} {
		got := memPositions{"p": "49590338271490256608559692538361571095921575989136588802", "a": "1"}
		if err := Rewind(context.Background(), shards, got, "m", tc.to); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tc.want, map[string]string(got)); diff != "" {
			t.Errorf("%s: checkpoints (-want +got):\n%s", tc.to.Type, diff)
		}
		p := &Poller{c: Config{Common: Common{Mapping: "m", Positions: got, StartingPosition: TrimHorizon}}, ctx: context.Background()}
		pos, ended, err := p.start(context.Background(), &shard{id: "a"}, "")
		if err != nil || ended || !pos.Timestamp.Equal(tc.pos.Timestamp) || pos.Type != tc.pos.Type {
			t.Errorf("%s: shard a starts at %+v (ended %v, %v), want %+v", tc.to.Type, pos, ended, err, tc.pos)
		}
	}
	if _, ok := parseMarker("AT_TIMESTAMP:x"); ok {
		t.Error("a damaged marker was read")
	}
}
