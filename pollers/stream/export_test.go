package stream

// Noted returns how many Dones noted positions to store (tests wait for
// Dones blocked behind a write).
func Noted(p *Poller) uint64 {
	p.doneMu.Lock()
	defer p.doneMu.Unlock()
	return p.seq
}
