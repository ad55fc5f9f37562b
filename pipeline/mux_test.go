package pipeline

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"testing/synctest"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/pollers/memsource"
	"github.com/esmd/esmd/source"
)

// TestMuxPicksTheClaimingSource: two descriptors of one Source (as
// RabbitMQ and ActiveMQ share Amazon MQ) behind one Mux: a mapping runs on,
// and is checked by, the descriptor that claims it, else the one without
// Claims.
func TestMuxPicksTheClaimingSource(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const claimed = "arn:aws:mq:us-east-1:000000000000:broker:claimed:b-1"
		logs := map[string]*memsource.Log{"claiming": memsource.NewLog(1), "fallback": memsource.NewLog(1)}
		refused := errors.New("refused")
		runner := func(name string, claims bool) *Runner {
			d := *descriptorFor(esm.SourceKinesis)
			if claims {
				d.Claims = func(_ context.Context, _ *source.Env, c *esm.Config) (bool, error) {
					return c.EventSourceArn != nil && *c.EventSourceArn == claimed, nil
				}
			}
			d.Check = func(context.Context, *source.Env, *esm.Config) error {
				return &esm.Error{Type: esm.ErrTypeInvalidParameterValue, Status: http.StatusBadRequest, Message: name + ": " + refused.Error()}
			}
			return &Runner{Source: &d, Invoker: &fakeInvoker{},
				Open: func(context.Context, *esm.Mapping) (source.Poller, error) { return logs[name].NewPoller(7), nil }}
		}
		mux := Mux{runner("fallback", false), runner("claiming", true)}
		for name, arn := range map[string]string{"claiming": claimed, "fallback": "arn:aws:mq:us-east-1:000000000000:broker:other:b-2"} {
			m := mapping(func(c *esm.Config) { c.EventSourceArn = ptr(arn) })
			var ee *esm.Error
			if err := mux.CheckSource(context.Background(), esm.SourceKinesis, &m.Config); !errors.As(err, &ee) || ee.Message != name+": refused" {
				t.Errorf("%s: check answered %v", name, err)
			}
			logs[name].Produce("k", name)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- mux.Run(ctx, m, &fakeReporter{}) }()
			synctest.Wait()
			if cp := logs[name].Checkpoint("lane-0"); cp != 0 {
				t.Errorf("%s: its mapping did not run on its source (checkpoint %d)", name, cp)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
		if err := (Mux{runner("claiming", true)}).Run(context.Background(), mapping(nil), &fakeReporter{}); err == nil {
			t.Error("a mapping no descriptor claims ran")
		}
	})
}
