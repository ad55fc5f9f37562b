package benchtest

import (
	"slices"
	"testing"
)

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		in := slices.Clone(c.in)
		if got := Median(c.in); got != c.want {
			t.Errorf("Median(%v) = %v, want %v", c.in, got, c.want)
		}
		if !slices.Equal(in, c.in) {
			t.Errorf("Median reordered its input: %v", c.in)
		}
	}
}

func TestFormat(t *testing.T) {
	if got := Format([]float64{1.234, 10}, 2); !slices.Equal(got, []string{"1.23", "10.00"}) {
		t.Errorf("Format = %q", got)
	}
}

func TestCPUTimeGrows(t *testing.T) {
	c0 := CPUTime()
	x := 0
	for i := range 50_000_000 {
		x += i
	}
	_ = x
	if c1 := CPUTime(); c1 <= c0 {
		t.Errorf("CPU time did not grow over a busy loop: %v then %v", c0, c1)
	}
}
