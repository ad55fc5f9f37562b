package activemq

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/esmd/esmd/pollers/pollertest"
)

// TestConnectionErrorsLookAlike: whatever listens (or not) at a broker's
// endpoint, the error an API caller sees is AWS's one phrase.
func TestConnectionErrorsLookAlike(t *testing.T) {
	t.Parallel()
	pollertest.Unreachable(t, []string{"stomp://", "stomp+ssl://"}, 15*time.Second, func(ctx context.Context, scheme, addr string) (io.Closer, error) {
		return Open(ctx, Config{Endpoints: []string{scheme + addr}, Queue: "q"})
	})
}
