package rabbitmq_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/esmd/esmd/pollers/pollertest"
	"github.com/esmd/esmd/pollers/rabbitmq"
)

// TestConnectionErrorsLookAlike: whatever listens (or not) at a broker's
// endpoint, the error an API caller sees is AWS's one phrase.
func TestConnectionErrorsLookAlike(t *testing.T) {
	t.Parallel()
	pollertest.Unreachable(t, []string{"amqp://", "amqps://"}, 15*time.Second, func(ctx context.Context, scheme, addr string) (io.Closer, error) {
		return rabbitmq.Open(ctx, rabbitmq.Config{URL: scheme + addr, Queue: "q"})
	})
}
