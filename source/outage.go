package source

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/esmd/esmd/esm"
)

// Outage decides when a poller that cannot reach its source gives up, so
// that Poll reports it: a refusal waiting cannot change (an
// *esm.DisableError: refused credentials or access, on which the pipeline
// disables the mapping) at once, any other error once failures have lasted
// the outage's maximum. Safe for concurrent use.
type Outage struct {
	name string
	max  time.Duration
	now  func() time.Time

	mu    sync.Mutex
	since time.Time // zero while the source is reachable
	err   error
	done  chan struct{}
}

// NewOutage returns an Outage whose errors are prefixed with name (the
// source) and which gives up after max of failures.
func NewOutage(name string, max time.Duration) *Outage {
	return &Outage{name: name, max: max, now: time.Now, done: make(chan struct{})}
}

// Down records a failed attempt to reach the source. err is already
// classified: an *esm.DisableError ends the outage at once.
func (o *Outage) Down(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return
	}
	var de *esm.DisableError
	if errors.As(err, &de) {
		o.giveUp(fmt.Errorf("%s: %w", o.name, err))
		return
	}
	now := o.now()
	if o.since.IsZero() {
		o.since = now
	}
	if d := now.Sub(o.since); d >= o.max {
		o.giveUp(fmt.Errorf("%s: broker unreachable for %v: %w", o.name, d.Round(time.Second), err))
	}
}

func (o *Outage) giveUp(err error) {
	o.err = err
	close(o.done)
}

// Up records that the source is reachable again.
func (o *Outage) Up() {
	o.mu.Lock()
	o.since = time.Time{}
	o.mu.Unlock()
}

// Done is closed when the poller gives up; Err then says why.
func (o *Outage) Done() <-chan struct{} { return o.done }

// Err is why the poller gave up, nil before.
func (o *Outage) Err() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.err
}
