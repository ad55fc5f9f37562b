package esm

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// rewindRunner is a Runner that records its runs and rewinds.
type rewindRunner struct {
	mu      sync.Mutex
	running int
	runs    int
	rewinds []Position
	// during is the number of pipelines running when Rewind was called.
	during []int
	fail   error
	refuse error
	// gate, when not nil, holds Rewind until it is closed, so that the
	// mapping stays Updating for as long as a test needs.
	gate chan struct{}
}

func (r *rewindRunner) Run(ctx context.Context, _ *Mapping, _ Reporter) error {
	r.mu.Lock()
	r.running++
	r.runs++
	r.mu.Unlock()
	<-ctx.Done()
	r.mu.Lock()
	r.running--
	r.mu.Unlock()
	return nil
}

func (r *rewindRunner) CanRewind(context.Context, *Mapping) error { return r.refuse }

func (r *rewindRunner) Rewind(_ context.Context, _ *Mapping, to Position) error {
	r.mu.Lock()
	gate := r.gate
	r.mu.Unlock()
	if gate != nil {
		<-gate
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rewinds = append(r.rewinds, to)
	r.during = append(r.during, r.running)
	return r.fail
}

// TestReplay checks Engine.Replay: the mapping goes through Updating, the
// rewind runs while no pipeline of the mapping runs, and the pipeline
// starts again; a failed rewind shows in LastProcessingResult; what cannot
// be replayed is refused.
func TestReplay(t *testing.T) {
	r := &rewindRunner{}
	e := newTestEngine(t, WithRunner(SourceKinesis, r), WithRunner(SourceSQS, RunnerFunc(func(ctx context.Context, _ *Mapping, _ Reporter) error {
		<-ctx.Done()
		return nil
	})))
	ctx := context.Background()
	m, err := e.Create(ctx, &Config{FunctionName: aws.String("f"), EventSourceArn: aws.String(kinesisArn), StartingPosition: aws.String("LATEST")})
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, e, m.UUID, StateEnabled)
	ts := time.Unix(1767225600, 0)
	// The rewind waits until the second Replay has been tried: without the
	// gate the replay could finish first, and the mapping be Enabled again.
	gate := make(chan struct{})
	r.mu.Lock()
	r.gate = gate
	r.mu.Unlock()
	got, err := e.Replay(ctx, m.UUID, Position{Type: ReplayAtTimestamp, Timestamp: ts})
	if err != nil {
		t.Fatal(err)
	}
	if got.State != StateUpdating {
		t.Errorf("state %s after Replay, want Updating", got.State)
	}
	if _, err := e.Replay(ctx, m.UUID, Position{Type: ReplayLatest}); err == nil || asAPIError(t, err).Type != ErrTypeResourceInUse {
		t.Errorf("replay while Updating: %v", err)
	}
	close(gate)
	waitState(t, e, m.UUID, StateEnabled)
	r.mu.Lock()
	if len(r.rewinds) != 1 || !r.rewinds[0].Timestamp.Equal(ts) || r.during[0] != 0 || r.runs != 2 {
		t.Errorf("rewinds %v with %v pipelines running, %d runs", r.rewinds, r.during, r.runs)
	}
	r.fail = errors.New("broker unreachable")
	r.mu.Unlock()

	if _, err := e.Replay(ctx, m.UUID, Position{Type: ReplayTrimHorizon}); err != nil {
		t.Fatal(err)
	}
	after := waitState(t, e, m.UUID, StateEnabled)
	if after.LastProcessingResult != "PROBLEM: replay to TRIM_HORIZON failed: broker unreachable" {
		t.Errorf("LastProcessingResult %q", after.LastProcessingResult)
	}

	q, err := e.Create(ctx, &Config{FunctionName: aws.String("f"), EventSourceArn: aws.String(sqsArn)})
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, e, q.UUID, StateEnabled)
	r.refuse = &Error{Type: ErrTypeInvalidParameterValue, Status: http.StatusBadRequest, Message: "no"}
	for _, tc := range []struct {
		id   string
		to   Position
		want string
	}{
		{q.UUID, Position{Type: ReplayLatest}, "esmd cannot replay sqs event sources."},
		{m.UUID, Position{Type: ReplayLatest}, "no"},
		{m.UUID, Position{Type: "AT_SEQUENCE_NUMBER"}, `Replay position "AT_SEQUENCE_NUMBER" must be TRIM_HORIZON, LATEST or AT_TIMESTAMP.`},
		{m.UUID, Position{Type: ReplayAtTimestamp}, "AT_TIMESTAMP needs a timestamp."},
		{"00000000-0000-0000-0000-000000000000", Position{Type: ReplayLatest}, "The resource you requested does not exist."},
	} {
		_, err := e.Replay(ctx, tc.id, tc.to)
		if err == nil || asAPIError(t, err).Message != tc.want {
			t.Errorf("%s %s: %v, want %q", tc.id, tc.to.Type, err, tc.want)
		}
	}
}
