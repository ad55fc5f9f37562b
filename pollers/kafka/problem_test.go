package kafka

import (
	"context"
	"crypto/tls"
	"io"
	"testing"
	"time"

	"github.com/esmd/esmd/pollers/pollertest"
)

// TestConnectionErrorsLookAlike: whatever listens (or not) at the bootstrap
// servers a mapping names, the error an API caller sees is AWS's one
// phrase, so LastProcessingResult cannot be used as a port scanner.
func TestConnectionErrorsLookAlike(t *testing.T) {
	t.Parallel()
	pollertest.Unreachable(t, []string{"plain:", "tls:"}, 3*time.Second, func(ctx context.Context, scheme, addr string) (io.Closer, error) {
		cfg := Config{Seeds: []string{addr}, Topics: []string{"t"}, Group: "g"}
		if scheme == "tls:" {
			cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		return New(ctx, cfg)
	})
}
