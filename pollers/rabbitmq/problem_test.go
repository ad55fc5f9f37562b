package rabbitmq_test

import (
	"context"
	"testing"
	"time"

	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/pollers/rabbitmq"
	"github.com/esmd/esmd/source"
)

// TestConnectionErrorsLookAlike: whatever listens (or not) at a broker's
// endpoint, the error an API caller sees is AWS's one phrase; the causes go
// to the log.
func TestConnectionErrorsLookAlike(t *testing.T) {
	t.Parallel()
	for name, addr := range testenv.Unreachable(t) {
		for _, scheme := range []string{"amqp://", "amqps://"} {
			t.Run(scheme+name, func(t *testing.T) {
				t.Parallel()
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				p, err := rabbitmq.Open(ctx, rabbitmq.Config{URL: scheme + addr, Queue: "q"})
				cancel()
				if err == nil {
					p.Close()
					t.Fatal("connected")
				}
				shown, detail := source.Shown(err)
				if shown.Error() != source.PhraseConnection || detail == nil {
					t.Errorf("shown %q, want %q", shown, source.PhraseConnection)
				}
			})
		}
	}
}
