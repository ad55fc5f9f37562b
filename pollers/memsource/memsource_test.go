package memsource

import (
	"encoding/json"
	"testing"

	"github.com/esmd/esmd/pollers/pollertest"
	"github.com/esmd/esmd/source"
)

func TestConformance(t *testing.T) {
	pollertest.Run(t, pollertest.Harness{
		Features: pollertest.Features{Ordered: true},
		Setup: func(t *testing.T) pollertest.Source {
			log := NewLog(3)
			return pollertest.Source{
				Open:    func(t *testing.T) source.Poller { return log.NewPoller(5) },
				Produce: func(t *testing.T, key, body string) { log.Produce(key, body) },
				Body: func(t *testing.T, r source.Record) string {
					var b Body
					if err := json.Unmarshal(r.Data, &b); err != nil {
						t.Fatal(err)
					}
					return b.Body
				},
			}
		},
	})
}
