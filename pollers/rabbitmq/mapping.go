package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/secrets"
	"github.com/esmd/esmd/source"
)

// Env is what the poller of a mapping needs from esmd: where brokers are
// and what their credentials are.
type Env struct {
	// Brokers maps broker ARNs to AMQP endpoints, amqp://host:port or
	// amqps://host:port (esmd's --mq-broker ARN=URL).
	Brokers map[string]string
	// Describe finds the AMQP endpoint of a broker not in Brokers (Amazon
	// MQ DescribeBroker); nil when esmd has no way to.
	Describe func(ctx context.Context, brokerArn string) (string, error)
	// Secret returns the username and password of a BASIC_AUTH secret to
	// be sent to a broker (secrets.Resolver.BasicAuth, which refuses a
	// broker the secret's restriction does not allow).
	Secret func(ctx context.Context, secretArn string, to secrets.Target) (username, password string, err error)
}

// ParseBrokers parses --mq-broker values, "ARN=URL", or "ARN=URL,URL,..."
// for a broker with several endpoints (ActiveMQ's, as DescribeBroker lists
// them).
func ParseBrokers(values []string) (map[string]string, error) {
	out := make(map[string]string, len(values))
	for _, v := range values {
		arn, u, ok := strings.Cut(v, "=")
		if !ok || arn == "" || u == "" {
			return nil, fmt.Errorf("--mq-broker %q: want ARN=amqp://host:port", v)
		}
		// The flag is shared with ActiveMQ brokers, whose value lists their
		// endpoints as DescribeBroker does (ssl://...,stomp://...): an AMQP
		// endpoint among them is RabbitMQ's; a value without one is kept
		// as it is (pollers/activemq claims those mappings, and a RabbitMQ
		// poller given one refuses its URL).
		for _, e := range strings.Split(u, ",") {
			if e = strings.TrimSpace(e); strings.HasPrefix(e, "amqp://") || strings.HasPrefix(e, "amqps://") {
				u = e
				break
			}
		}
		if !strings.Contains(u, "://") {
			return nil, fmt.Errorf("--mq-broker %q: want ARN=scheme://host:port", v)
		}
		out[arn] = u
	}
	return out, nil
}

// brokerURL returns a broker's AMQP endpoint.
func (e *Env) brokerURL(ctx context.Context, arn string) (string, error) {
	if u, ok := e.Brokers[arn]; ok {
		return u, nil
	}
	if e.Describe == nil {
		return "", fmt.Errorf("%w: %s (give its endpoint with --mq-broker ARN=amqp://host:port)", ErrUnknownBroker, arn)
	}
	u, err := e.Describe(ctx, arn)
	if err != nil {
		return "", fmt.Errorf("describe broker %s: %w", arn, err)
	}
	return u, nil
}

// ErrUnknownBroker: esmd does not know the broker's endpoint.
var ErrUnknownBroker = errors.New("unknown broker")

// Config returns the poller configuration of a mapping: its broker's
// endpoint, Queues[0], the VIRTUAL_HOST (default "/"), the BASIC_AUTH
// credentials and BatchSize. name identifies the consumers (the mapping's
// UUID).
func (e *Env) Config(ctx context.Context, c *esm.Config, name string) (Config, error) {
	var cfg Config
	if c.EventSourceArn == nil {
		return cfg, errors.New("rabbitmq: the mapping has no EventSourceArn")
	}
	if len(c.Queues) != 1 {
		return cfg, fmt.Errorf("rabbitmq: the mapping has %d queues, want 1", len(c.Queues))
	}
	u, err := e.brokerURL(ctx, *c.EventSourceArn)
	if err != nil {
		return cfg, err
	}
	cfg = Config{URL: u, Queue: c.Queues[0], VHost: VHost(c), Name: name, EventSourceARN: *c.EventSourceArn}
	if c.BatchSize != nil {
		cfg.BatchSize = int(*c.BatchSize)
	}
	if arn := sac(c, "BASIC_AUTH"); arn != "" {
		if e.Secret == nil {
			return cfg, fmt.Errorf("rabbitmq: no secrets resolver for BASIC_AUTH %s", arn)
		}
		if cfg.Username, cfg.Password, err = e.Secret(ctx, arn, Target(*c.EventSourceArn, u)); err != nil {
			return cfg, source.Denied(fmt.Errorf("BASIC_AUTH secret: %w", err))
		}
	}
	return cfg, nil
}

// Target is where a mapping sends its BASIC_AUTH secret: the broker's ARN
// and its AMQP endpoint (port 5671 for amqps, 5672 for amqp when the URL
// names none).
func Target(brokerArn, url string) secrets.Target {
	port := "5672"
	if strings.HasPrefix(url, "amqps://") {
		port = "5671"
	}
	return secrets.Target{ARN: brokerArn, Endpoints: []string{secrets.HostPort(url, port)}}
}

// CheckAccess implements the Access check of the descriptor: a BASIC_AUTH
// secret restricted to other brokers is refused (an *esm.Error). A broker
// that cannot be found now is left to the poller, which checks again.
func (e *Env) CheckAccess(ctx context.Context, env *source.Env, c *esm.Config) error {
	if c.EventSourceArn == nil || !source.NamesSecrets(c) {
		return nil
	}
	u, err := e.brokerURL(ctx, *c.EventSourceArn)
	if err != nil {
		return nil
	}
	return source.SecretTarget(ctx, env, c, Target(*c.EventSourceArn, u))
}

// VHost returns a mapping's virtual host: its VIRTUAL_HOST, else "/".
func VHost(c *esm.Config) string {
	if v := sac(c, "VIRTUAL_HOST"); v != "" {
		return v
	}
	return "/"
}

func sac(c *esm.Config, typ string) string {
	for _, s := range c.SourceAccessConfigurations {
		if s.Type != nil && *s.Type == typ && s.URI != nil {
			return *s.URI
		}
	}
	return ""
}

// CheckSource implements esm.SourceChecker for RabbitMQ mappings: it
// refuses a mapping whose virtual host or queue the broker says does not
// exist, with an InvalidParameterValueException. Anything it cannot decide
// (an unknown or unreachable broker, credentials the broker refuses, a
// secret it cannot read) does not refuse the mapping: AWS creates those
// and reports the problem once the mapping runs, and so does the poller.
func (e *Env) CheckSource(ctx context.Context, src esm.Source, c *esm.Config) error {
	if src != esm.SourceMQ {
		return nil
	}
	cfg, err := e.Config(ctx, c, "check")
	if err != nil {
		return nil
	}
	err = Check(ctx, cfg)
	arn := *c.EventSourceArn
	switch {
	case errors.Is(err, ErrVHostNotFound):
		return &esm.Error{Type: esm.ErrTypeInvalidParameterValue, Status: http.StatusBadRequest,
			Message: fmt.Sprintf("The virtual host %s does not exist on the broker %s.", cfg.VHost, arn)}
	case errors.Is(err, ErrQueueNotFound):
		return &esm.Error{Type: esm.ErrTypeInvalidParameterValue, Status: http.StatusBadRequest,
			Message: fmt.Sprintf("The queue %s does not exist in the virtual host %s of the broker %s.", cfg.Queue, cfg.VHost, arn)}
	}
	return nil
}
