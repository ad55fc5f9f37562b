//go:build linux

package rabbitmq_test

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"time"
)

// quiet waits until the machine's CPUs are mostly idle (under 15% busy over
// two 250 ms samples in a row), at most limit, and returns how long it
// waited. The broker keeps working after a queue was filled or drained
// (writing and compacting its message store, garbage collecting), and a
// side that starts while it does runs on a slower machine than a side that
// starts on a quiet one: each side of the throughput benchmark starts on a
// quiet machine.
func quiet(limit time.Duration) time.Duration {
	start := time.Now()
	busy0, total0, ok := cpuStat()
	if !ok {
		return 0
	}
	calm := 0
	for time.Since(start) < limit {
		time.Sleep(250 * time.Millisecond)
		busy, total, ok := cpuStat()
		if !ok {
			return time.Since(start)
		}
		if total > total0 && float64(busy-busy0)/float64(total-total0) < 0.15 {
			calm++
			if calm == 2 {
				break
			}
		} else {
			calm = 0
		}
		busy0, total0 = busy, total
	}
	return time.Since(start)
}

// cpuStat returns the busy and total jiffies of all CPUs from /proc/stat.
func cpuStat() (busy, total uint64, ok bool) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0, 0, false
	}
	fields := strings.Fields(sc.Text())
	if len(fields) < 5 || fields[0] != "cpu" {
		return 0, 0, false
	}
	for i, s := range fields[1:] {
		if i == 8 {
			break // guest time, already counted in user
		}
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, 0, false
		}
		total += v
		// user nice system idle iowait irq softirq steal ...: idle and
		// iowait are not busy.
		if i != 3 && i != 4 {
			busy += v
		}
	}
	return busy, total, true
}

// brokerCPU is the CPU time the broker's Erlang VM (beam.smp) has used, to
// compare what each side costs the broker per message.
func brokerCPU() time.Duration {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	var ticks uint64
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open || s[open+1:end] != "beam.smp" {
			continue
		}
		f := strings.Fields(s[end+1:])
		if len(f) < 13 {
			continue
		}
		// Fields after the name: state is f[0]; utime and stime are
		// fields 14 and 15 of stat, f[11] and f[12] here.
		u, _ := strconv.ParseUint(f[11], 10, 64)
		st, _ := strconv.ParseUint(f[12], 10, 64)
		ticks += u + st
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ
}
