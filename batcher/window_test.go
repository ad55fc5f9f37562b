package batcher

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/esmd/esmd/payload"
	"github.com/esmd/esmd/source"
)

var kinEnv = payload.StreamRecords("arn:aws:kinesis:us-east-1:000000000000:stream/s")

func arec(id int, arrival time.Time) source.Record {
	r := rec("shardId-000000000006", "", id, 12)
	r.Arrival = arrival
	return r
}

// want describes one batch of a window test.
type want struct {
	ids          string
	start        time.Time
	state        string // "" for none ({} in the event)
	final, early bool
	at           time.Duration // when it is released, from the test start
}

func checkWindow(t *testing.T, t0 time.Time, bt *Batch, w want) {
	t.Helper()
	if bt == nil {
		t.Fatalf("no batch, want %+v", w)
	}
	if ids(bt) != w.ids {
		t.Fatalf("records %q, want %q", ids(bt), w.ids)
	}
	win := bt.Window
	if win == nil {
		t.Fatalf("batch %s has no window", ids(bt))
	}
	if !win.Start.Equal(w.start) || !win.End.Equal(w.start.Add(time.Minute)) {
		t.Fatalf("window %v-%v, want start %v", win.Start, win.End, w.start)
	}
	if string(win.State) != w.state {
		t.Fatalf("batch %s: state %q, want %q", ids(bt), win.State, w.state)
	}
	if win.IsFinalInvokeForWindow != w.final || win.IsWindowTerminatedEarly != w.early {
		t.Fatalf("batch %s: final=%v early=%v, want %v %v", ids(bt), win.IsFinalInvokeForWindow, win.IsWindowTerminatedEarly, w.final, w.early)
	}
	if got := time.Since(t0); got != w.at {
		t.Fatalf("batch %s released at %v, want %v", ids(bt), got, w.at)
	}
	if win.ShardID != bt.Lane {
		t.Fatalf("shardId %q", win.ShardID)
	}
	ev := checkEvent(t, bt)
	var e struct {
		Records []json.RawMessage
		State   json.RawMessage `json:"state"`
		Final   bool            `json:"isFinalInvokeForWindow"`
		Early   bool            `json:"isWindowTerminatedEarly"`
	}
	if err := json.Unmarshal(ev, &e); err != nil {
		t.Fatalf("event %s: %v", ev, err)
	}
	if len(e.Records) != len(bt.Records) || e.Final != w.final || e.Early != w.early {
		t.Fatalf("event %s does not match the batch", ev)
	}
	if w.state == "" && string(e.State) != "{}" {
		t.Fatalf("state %s, want {}", e.State)
	}
}

// TestTumblingWindowAlignment pins window bounds on AWS's example: a 120 s
// window holding a record that arrived at 07:05:13 is 07:04:00-07:06:00.
func TestTumblingWindowAlignment(t *testing.T) {
	arrival := time.Date(2020, 12, 9, 7, 5, 13, 0, time.UTC)
	b := newB(t, Policy{BatchSize: 10, TumblingWindow: 120 * time.Second}, kinEnv, WithClock(newManualClock(arrival)))
	mustAdd(t, b, arec(1, arrival))
	bt := tryNext(b)
	if bt == nil {
		t.Fatal("no batch")
	}
	ev := string(checkEvent(t, bt))
	for _, s := range []string{
		`"window":{"start":"2020-12-09T07:04:00Z","end":"2020-12-09T07:06:00Z"}`,
		`"state":{}`, `"shardId":"shardId-000000000006"`,
		`"eventSourceARN":"arn:aws:kinesis:us-east-1:000000000000:stream/s"`,
	} {
		if !strings.Contains(ev, s) {
			t.Errorf("event lacks %s: %s", s, ev)
		}
	}
	// A window that does not divide a day is still aligned on the epoch:
	// 7 s windows start at multiples of 7 s since 1970.
	b7 := newB(t, Policy{BatchSize: 10, TumblingWindow: 7 * time.Second}, kinEnv, WithClock(newManualClock(time.Unix(1000, 5))))
	mustAdd(t, b7, arec(1, time.Unix(1000, 5)))
	if bt := tryNext(b7); bt == nil || bt.Window.Start.Unix() != 994 {
		t.Fatalf("7 s window: %+v", bt.Window)
	}
}

// TestTumblingWindowState walks a lane through two windows: state carried
// between the invocations of a window, dropped at its final invocation, the
// final flag on the batch before the next window's records, and a final
// invocation without records once the grace after the window's end passed.
func TestTumblingWindowState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now() // 2000-01-01T00:00:00Z: a window start
		w0, w1 := t0, t0.Add(time.Minute)
		b := newB(t, Policy{BatchSize: 2, TumblingWindow: time.Minute}, kinEnv)
		mustAdd(t, b, arec(1, w0), arec(2, w0.Add(10*time.Second)), arec(3, w0.Add(59*time.Second)), arec(4, w1.Add(time.Second)))
		steps := []struct {
			want
			doneState string
		}{
			{want{ids: "1,2", start: w0}, `{"n":2}`},
			{want{ids: "3", start: w0, state: `{"n":2}`, final: true}, `{"n":3}`},
			{want{ids: "4", start: w1}, `{"w1":1}`},
			// Nothing more arrives: the final invocation comes at the
			// window's end (t0+2m) plus the 2 minute grace.
			{want{ids: "", start: w1, state: `{"w1":1}`, final: true, at: 4 * time.Minute}, `{"ignored":1}`},
		}
		for _, s := range steps {
			bt, err := nextIn(t, b, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			checkWindow(t, t0, bt, s.want)
			mustDone(t, b, bt, s.doneState)
		}
		if busyLanes(b) != 0 {
			t.Fatal("lane busy after its last window closed")
		}
	})
}

// TestTumblingWindowNextWindowFirst: the last records of a window were sent
// before the next window's records arrived; the final invocation of the
// first window (no records) comes before them.
func TestTumblingWindowNextWindowFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		b := newB(t, Policy{BatchSize: 10, TumblingWindow: time.Minute}, kinEnv)
		mustAdd(t, b, arec(1, t0))
		bt, _ := nextIn(t, b, time.Hour)
		checkWindow(t, t0, bt, want{ids: "1", start: t0})
		time.Sleep(70 * time.Second)
		mustAdd(t, b, arec(2, t0.Add(65*time.Second)), arec(3, t0.Add(30*time.Second)))
		mustDone(t, b, bt, `{"a":1}`)
		bt, _ = nextIn(t, b, time.Hour)
		checkWindow(t, t0, bt, want{ids: "", start: t0, state: `{"a":1}`, final: true, at: 70 * time.Second})
		mustDone(t, b, bt, `{"dropped":1}`)
		// Record 3 arrived with an earlier timestamp than record 2: it joins
		// the lane's current window rather than reopening a closed one.
		bt, _ = nextIn(t, b, time.Hour)
		checkWindow(t, t0, bt, want{ids: "2,3", start: t0.Add(time.Minute), at: 70 * time.Second})
		mustDone(t, b, bt, "")
	})
}

// TestTumblingWindowTerminatedEarly: a state over the limit ends the window
// early: an invocation with that state, no records and both flags; then
// the window goes on with a fresh state.
func TestTumblingWindowTerminatedEarly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		b := newB(t, Policy{BatchSize: 1, TumblingWindow: time.Minute}, kinEnv, WithMaxWindowState(16))
		mustAdd(t, b, arec(1, t0), arec(2, t0), arec(3, t0))
		big := `{"s":"0123456789abc"}` // 21 bytes
		steps := []struct {
			want
			doneState string
		}{
			{want{ids: "1", start: t0}, big},
			{want{ids: "", start: t0, state: big, final: true, early: true}, `{"after":1}`},
			{want{ids: "2", start: t0}, `{"s":1}`},
			{want{ids: "3", start: t0, state: `{"s":1}`}, `{"s":2}`},
		}
		for _, s := range steps {
			bt := tryNext(b)
			checkWindow(t, t0, bt, s.want)
			if x := tryNext(b); x != nil {
				t.Fatalf("second batch %s in flight", ids(x))
			}
			mustDone(t, b, bt, s.doneState)
		}
		// Exactly the limit is not over it.
		b2 := newB(t, Policy{BatchSize: 1, TumblingWindow: time.Minute}, kinEnv, WithMaxWindowState(21))
		mustAdd(t, b2, arec(1, t0), arec(2, t0))
		bt := tryNext(b2)
		mustDone(t, b2, bt, big)
		checkWindow(t, t0, tryNext(b2), want{ids: "2", start: t0, state: big})
	})
}

// TestTumblingWindowEndLane: a shard that closes mid-window gets its final
// invocation at once, terminated early because the window had not ended.
func TestTumblingWindowEndLane(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		b := newB(t, Policy{BatchSize: 10, Window: 5 * time.Second, TumblingWindow: time.Minute}, kinEnv)
		mustAdd(t, b, arec(1, t0))
		b.EndLane("shardId-000000000006")
		bt, _ := nextIn(t, b, time.Hour)
		checkWindow(t, t0, bt, want{ids: "1", start: t0, final: true, early: true})
		mustDone(t, b, bt, `{"x":1}`)
		if len(b.lanes) != 0 {
			t.Fatal("ended lane kept")
		}

		// Ended after its last batch was sent: a final invocation without
		// records; after the window's end it is not early.
		mustAdd(t, b, arec(2, t0))
		bt, _ = nextIn(t, b, time.Hour)
		checkWindow(t, t0, bt, want{ids: "2", start: t0, at: 5 * time.Second})
		time.Sleep(time.Minute)
		b.EndLane("shardId-000000000006")
		mustDone(t, b, bt, `{"y":1}`)
		bt, _ = nextIn(t, b, time.Hour)
		checkWindow(t, t0, bt, want{ids: "", start: t0, state: `{"y":1}`, final: true, at: 65 * time.Second})
		mustDone(t, b, bt, "")
	})
}

// TestTumblingWindowPayload: the window wrapper and the state count toward
// the payload limit.
func TestTumblingWindowPayload(t *testing.T) {
	t0 := time.Unix(1700000000, 0).Truncate(time.Minute)
	const limit = 1000
	b := newB(t, Policy{BatchSize: 100, TumblingWindow: time.Minute}, kinEnv, WithMaxPayloadSize(limit), WithClock(newManualClock(t0)))
	var recs []source.Record
	for i := range 40 {
		r := arec(i, t0)
		r.Data = jsonString(50)
		recs = append(recs, r)
	}
	mustAdd(t, b, recs...)
	state := `{"pad":"` + strings.Repeat("p", 300) + `"}`
	var sizes []int
	for bt := tryNext(b); bt != nil; bt = tryNext(b) {
		ev := checkEvent(t, bt)
		if len(ev) > limit {
			t.Fatalf("event of %d bytes", len(ev))
		}
		// The next record (51 bytes with its comma) would not have fit,
		// counting the "false" spelling of the flags.
		if b.Len() > 0 && bt.Size+51+2 <= limit {
			t.Fatalf("batch of %d bytes cut early", bt.Size)
		}
		if len(bt.Records) > 0 && bt.Window.State != nil && !bytes.Equal(bt.Window.State, []byte(state)) {
			t.Fatalf("state %s", bt.Window.State)
		}
		sizes = append(sizes, len(bt.Records))
		mustDone(t, b, bt, state)
	}
	// The first batch has state {}, the later ones carry 300 bytes more.
	if len(sizes) < 3 || sizes[0] <= sizes[1] {
		t.Fatalf("batch sizes %v: the state does not count", sizes)
	}
}

// TestTumblingWindowSubLanes: each sub-lane has its own state.
func TestTumblingWindowSubLanes(t *testing.T) {
	t0 := time.Unix(1700000000, 0).Truncate(time.Minute)
	b := newB(t, Policy{BatchSize: 1, ParallelizationFactor: 10, TumblingWindow: time.Minute}, kinEnv, WithClock(newManualClock(t0)))
	var keys []string
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		if SubLane(k, 10) != SubLane("a", 10) || k == "a" {
			keys = append(keys, k)
		}
	}
	if len(keys) < 2 {
		t.Fatal("need two keys in different sub-lanes")
	}
	for _, k := range keys[:2] {
		r := arec(0, t0)
		r.Key = k
		mustAdd(t, b, r, r)
	}
	first := []*Batch{tryNext(b), tryNext(b)}
	for i, bt := range first {
		mustDone(t, b, bt, `{"sub":"`+keys[i]+`"}`)
	}
	for range 2 {
		bt := tryNext(b)
		if want := `{"sub":"` + bt.Records[0].Key + `"}`; string(bt.Window.State) != want {
			t.Fatalf("sub-lane %d got state %s, want %s", bt.SubLane, bt.Window.State, want)
		}
	}
}

// TestTumblingWindowOversize: an oversize record inside a window is
// released on its own (its Window is the wrapper it was measured with) and
// does not end or open the window; Done's state is ignored for it.
func TestTumblingWindowOversize(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		const limit = 600
		b := newB(t, Policy{BatchSize: 10, TumblingWindow: time.Minute}, kinEnv, WithMaxPayloadSize(limit))
		big := arec(2, t0)
		big.Data = jsonString(limit)
		mustAdd(t, b, arec(1, t0), big, arec(3, t0))
		bt := tryNext(b)
		checkWindow(t, t0, bt, want{ids: "1", start: t0})
		mustDone(t, b, bt, `{"n":1}`)
		bt = tryNext(b)
		if ids(bt) != "2" || !bt.Oversize || bt.Window == nil || bt.Window.IsFinalInvokeForWindow || bt.Size <= limit {
			t.Fatalf("got %s oversize=%v window=%+v size=%d", ids(bt), bt.Oversize, bt.Window, bt.Size)
		}
		checkEvent(t, bt)
		mustDone(t, b, bt, `{"ignored":1}`)
		bt = tryNext(b)
		checkWindow(t, t0, bt, want{ids: "3", start: t0, state: `{"n":1}`})
		// nil state keeps the state the batch was sent with.
		mustDone(t, b, bt, "")
		mustAdd(t, b, arec(4, t0))
		checkWindow(t, t0, tryNext(b), want{ids: "4", start: t0, state: `{"n":1}`})
	})
}
