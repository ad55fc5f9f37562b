package pollertest

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/source"
)

// Unreachable checks that a source's poller shows one phrase, AWS's
// source.PhraseConnection, whatever listens (or not) at the address it is
// given (testenv.Unreachable: a closed port, an unresolvable name, a
// service that is not the source, a listener that never answers), so that
// LastProcessingResult cannot be used as a port scanner; and that the
// cause, which differs, stays in the detail the pipeline logs. open
// connects to addr (host:port) and returns the poller, or the error; it is
// called for each scheme in schemes (for example "amqp://" and "amqps://",
// or "" for one try) in parallel subtests, with a context of wait.
func Unreachable(t *testing.T, schemes []string, wait time.Duration, open func(ctx context.Context, scheme, addr string) (io.Closer, error)) {
	t.Helper()
	for name, addr := range testenv.Unreachable(t) {
		for _, scheme := range schemes {
			t.Run(scheme+name, func(t *testing.T) {
				t.Parallel()
				ctx, cancel := context.WithTimeout(context.Background(), wait)
				defer cancel()
				p, err := open(ctx, scheme, addr)
				if err == nil {
					p.Close()
					t.Fatal("connected")
				}
				shown, detail := source.Shown(err)
				if shown.Error() != source.PhraseConnection || detail == nil {
					t.Errorf("shown %q (detail %v), want %q", shown, detail, source.PhraseConnection)
				}
			})
		}
	}
}
