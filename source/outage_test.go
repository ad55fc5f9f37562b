package source

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/esmd/esmd/esm"
)

func TestOutage(t *testing.T) {
	now := time.Unix(1000, 0)
	o := NewOutage("mq", time.Minute)
	o.now = func() time.Time { return now }
	down := errors.New("connection refused")
	o.Down(down)
	now = now.Add(59 * time.Second)
	o.Down(down)
	select {
	case <-o.Done():
		t.Fatal("gave up before the maximum")
	default:
	}
	o.Up() // reachable again: the next outage counts from its own start
	now = now.Add(30 * time.Second)
	o.Down(down)
	now = now.Add(59 * time.Second)
	o.Down(down)
	if o.Err() != nil {
		t.Fatalf("an outage of 59 s after Up gave up: %v", o.Err())
	}
	now = now.Add(time.Second)
	o.Down(down)
	<-o.Done()
	if err := o.Err(); !errors.Is(err, down) || !strings.Contains(err.Error(), "mq: broker unreachable for 1m0s") {
		t.Fatalf("gave up with %v", err)
	}
	o.Down(errors.New("later")) // the first reason stays
	if !errors.Is(o.Err(), down) {
		t.Fatalf("reason replaced: %v", o.Err())
	}

	refused := NewOutage("mq", time.Hour)
	refused.Down(&esm.DisableError{Reason: "EVENT_SOURCE_AUTHN_ERROR", Err: errors.New("bad password")})
	<-refused.Done()
	var de *esm.DisableError
	if !errors.As(refused.Err(), &de) || de.Reason != "EVENT_SOURCE_AUTHN_ERROR" {
		t.Fatalf("a refusal gave up with %v", refused.Err())
	}
}
