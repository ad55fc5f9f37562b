package backoff

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

func TestNextDoublesToMax(t *testing.T) {
	b := New(100*time.Millisecond, time.Second)
	var got []time.Duration
	for range 6 {
		got = append(got, b.Next())
	}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("delays %v, want %v ms", got, want)
		}
	}
	b.Reset()
	if d := b.Next(); d != 100*time.Millisecond {
		t.Fatalf("after Reset: %v", d)
	}
}

func TestDefaults(t *testing.T) {
	b := New(0, 0)
	if d := b.Next(); d != DefaultInitial {
		t.Fatalf("first delay %v", d)
	}
	for range 20 {
		b.Next()
	}
	if d := b.Next(); d != DefaultMax {
		t.Fatalf("capped delay %v", d)
	}
	if d := New(time.Minute, 0).Next(); d != time.Minute {
		t.Fatalf("initial above the default max: %v", d)
	}
}

func TestJitterStaysInRange(t *testing.T) {
	b := New(time.Second, time.Second)
	b.Jitter = true
	for range 100 {
		if d := b.Next(); d < 500*time.Millisecond || d >= time.Second {
			t.Fatalf("jittered delay %v outside [0.5s, 1s)", d)
		}
	}
}

func TestWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := New(time.Second, time.Minute)
		start := time.Now()
		if err := b.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		if el := time.Since(start); el != time.Second {
			t.Fatalf("waited %v", el)
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			time.Sleep(500 * time.Millisecond)
			cancel()
		}()
		if err := b.Wait(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Wait on a cancelled context: %v", err)
		}
		if el := time.Since(start); el != 1500*time.Millisecond {
			t.Fatalf("cancelled wait returned at %v", el)
		}
	})
}
