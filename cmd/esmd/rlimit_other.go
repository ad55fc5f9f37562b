//go:build !unix

package main

// fileLimit is unknown on this platform.
func fileLimit() uint64 { return 0 }
