//go:build !unix

package checkpoint

import (
	"os"
	"time"
)

// lockFile does nothing where flock is not available: bbolt locks the
// file itself right after it has been verified.
func lockFile(*os.File, bool, time.Duration) error { return nil }
