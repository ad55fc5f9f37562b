package bench

import (
	"context"
	"fmt"

	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"

	"github.com/esmd/esmd/esm"
)

// activeTarget is an ActiveMQ queue per round on the broker of --broker
// (STOMP).
type activeTarget struct {
	b     *brokerURL
	conn  *stomp.Conn
	queue string
}

func newActiveMQ(_ context.Context, cfg *Config) (*activeTarget, error) {
	b, err := parseBrokerURL(cfg.MQBroker, "stomp")
	if err != nil {
		return nil, err
	}
	conn, err := stomp.Dial("tcp", b.host, stomp.ConnOpt.Login(b.user, b.pass), stomp.ConnOpt.Host("/"))
	if err != nil {
		return nil, fmt.Errorf("ActiveMQ: %w", err)
	}
	return &activeTarget{b: b, conn: conn}, nil
}

func (t *activeTarget) Prepare(_ context.Context, round string) error {
	t.queue = "esmd-bench-" + round
	return nil
}

// Produce sends persistent messages; the last one asks for a receipt,
// which the broker sends once it handled every frame before it.
func (t *activeTarget) Produce(_ context.Context, bodies [][]byte) error {
	for i, b := range bodies {
		opts := []func(*frame.Frame) error{stomp.SendOpt.Header("persistent", "true")}
		if i == len(bodies)-1 {
			opts = append(opts, stomp.SendOpt.Receipt)
		}
		if err := t.conn.Send("/queue/"+t.queue, "application/json", b, opts...); err != nil {
			return fmt.Errorf("ActiveMQ send: %w", err)
		}
	}
	return nil
}

func (t *activeTarget) Mapping() *esm.Config { return t.b.mqMapping(t.queue) }

func (t *activeTarget) EsmdFlags(dir string) ([]string, error) {
	return t.b.esmdFlags(dir, "stomp://"+t.b.host)
}

func (t *activeTarget) Raw() RawSpec {
	return RawSpec{Endpoints: []string{"stomp://" + t.b.user + ":" + t.b.pass + "@" + t.b.host}, Name: t.queue, Arn: mqBrokerARN}
}

func (t *activeTarget) Filter() string { return `{"data":{"kind":["match"]}}` }

func (t *activeTarget) Close() {
	if t.conn != nil {
		_ = t.conn.Disconnect()
	}
}
