package activemq

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/source"
)

// TestClaims: the ActiveMQ descriptor takes brokers whose --mq-broker
// endpoints are not AMQP, and those DescribeBroker says run ACTIVEMQ; it
// leaves RabbitMQ's and unknown brokers to RabbitMQ's descriptor.
func TestClaims(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v1/brokers/b-rabbit":
			_, _ = io.WriteString(w, `{"brokerId":"b-rabbit","engineType":"RABBITMQ","brokerInstances":[{"endpoints":["amqps://b-rabbit.mq.us-east-1.amazonaws.com:5671"]}]}`)
		case "/v1/brokers/b-active":
			_, _ = io.WriteString(w, `{"brokerId":"b-active","brokerArn":"arn:aws:mq:us-east-1:000000000000:broker:a:b-active","engineType":"ACTIVEMQ","brokerInstances":[`+
				`{"endpoints":["ssl://b-active-1.mq.us-east-1.amazonaws.com:61617","stomp+ssl://b-active-1.mq.us-east-1.amazonaws.com:61614"]},`+
				`{"endpoints":["ssl://b-active-2.mq.us-east-1.amazonaws.com:61617","stomp+ssl://b-active-2.mq.us-east-1.amazonaws.com:61614"]}]}`)
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"errorAttribute":"broker-id","message":"Can't find requested broker"}`)
		}
	}))
	defer srv.Close()
	env := &source.Env{AWS: testenv.AWSConfig(srv.URL), Flags: map[string][]string{"mq-broker": {
		"arn:flag-active=ssl://127.0.0.1:61617,stomp://127.0.0.1:61613",
		"arn:flag-rabbit=amqp://127.0.0.1:5672",
	}}}
	d := Descriptor()
	ctx := context.Background()
	for arn, want := range map[string]bool{
		"arn:flag-active": true, "arn:flag-rabbit": false,
		"arn:aws:mq:us-east-1:000000000000:broker:a:b-active": true,
		"arn:aws:mq:us-east-1:000000000000:broker:r:b-rabbit": false,
		"arn:aws:mq:us-east-1:000000000000:broker:g:b-gone":   false,
	} {
		got, err := d.Claims(ctx, env, &esm.Config{EventSourceArn: &arn})
		if err != nil || got != want {
			t.Errorf("Claims(%s) = %v, %v; want %v", arn, got, err, want)
		}
	}
	e := EnvFor(env)
	arn := "arn:aws:mq:us-east-1:000000000000:broker:a:b-active"
	cfg, err := e.Config(ctx, &esm.Config{EventSourceArn: &arn, Queues: []string{"q"}}, "id")
	if err != nil || len(cfg.Endpoints) != 2 || cfg.Endpoints[0] != "stomp+ssl://b-active-1.mq.us-east-1.amazonaws.com:61614" ||
		cfg.Endpoints[1] != "stomp+ssl://b-active-2.mq.us-east-1.amazonaws.com:61614" {
		t.Errorf("DescribeBroker config %+v, %v", cfg, err)
	}
	// An ARN whose id is the broker's but whose name (or region, or
	// account) is not, as a caller would write to match a secret's
	// esmd:allowed-endpoints glob, is refused.
	arn = "arn:aws:mq:us-east-1:000000000000:broker:prod-spoof:b-active"
	if cfg, err := e.Config(ctx, &esm.Config{EventSourceArn: &arn, Queues: []string{"q"}}, "id"); err == nil ||
		!strings.Contains(err.Error(), "the broker b-active is arn:aws:mq:us-east-1:000000000000:broker:a:b-active, not "+arn) {
		t.Errorf("a spoofed ARN: %+v, %v", cfg, err)
	}
	arn = "arn:flag-active"
	cfg, err = e.Config(ctx, &esm.Config{EventSourceArn: &arn, Queues: []string{"q"}}, "id")
	if err != nil || len(cfg.Endpoints) != 1 || cfg.Endpoints[0] != "stomp://127.0.0.1:61613" {
		t.Errorf("--mq-broker config %+v, %v", cfg, err)
	}
}
