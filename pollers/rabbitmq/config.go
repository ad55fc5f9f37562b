package rabbitmq

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/source"
)

// Config says which queue a Poller reads and how.
type Config struct {
	// URL is the broker's endpoint, amqp://host:port or amqps://host:port
	// (AWS: the broker's AMQP endpoint, port 5671 with TLS). Credentials
	// and a virtual host in the URL are used only when Username and VHost
	// are empty.
	URL string
	// Username and Password log in with SASL PLAIN (AWS: the BASIC_AUTH
	// secret's "username" and "password").
	Username, Password string
	// VHost is the virtual host (AWS: VIRTUAL_HOST; default "/").
	VHost string
	// Queue is the queue to consume (AWS: Queues[0]).
	Queue string
	// EventSourceARN is the broker's ARN, the event's eventSourceArn (AWS:
	// EventSourceArn).
	EventSourceARN string
	// BatchSize is the mapping's BatchSize, which sizes the prefetch
	// (AWS: BatchSize; default 100). Batching itself is the batcher's.
	BatchSize int
	// Prefetch is each consumer's prefetch count, the deliveries it holds
	// unacked (default BatchSize: a consumer never holds more than a
	// batch, and more consumers hold more while the backlog lasts).
	Prefetch int
	// MaxConsumers bounds the consumers (channels) the poller scales to
	// while the backlog grows (default 4).
	MaxConsumers int
	// ScaleInterval is how often the backlog is measured (default 1 s).
	ScaleInterval time.Duration
	// TLS configures amqps:// connections (default: system roots, the
	// URL's host as server name).
	TLS *tls.Config
	// Name identifies the consumers in the broker: it prefixes consumer
	// tags and is the connection's name (AWS: the mapping's UUID).
	Name string
	// ReconnectDelay and MaxReconnectDelay bound the backoff between
	// attempts to reconnect or reopen a channel (defaults 100 ms and 5 s).
	ReconnectDelay, MaxReconnectDelay time.Duration
	// RequeueDelay and MaxRequeueDelay bound how long failed records wait
	// before they are nacked back to the queue, doubling with consecutive
	// failures (defaults 100 ms and 5 s; a negative RequeueDelay nacks at
	// once). AWS documents no delay; without one a function failing on a
	// message would be invoked with it as fast as the broker redelivers.
	RequeueDelay, MaxRequeueDelay time.Duration
	// MaxDowntime is how long the poller keeps trying to reconnect
	// silently; past it Poll returns the last error (default 1 min).
	MaxDowntime time.Duration
	// Heartbeat is the AMQP heartbeat interval (default 10 s), which
	// bounds how long a dead connection goes unnoticed.
	Heartbeat time.Duration
	// Log receives the poller's logs (default: discard).
	Log *slog.Logger
}

func (c *Config) setDefaults() {
	if c.VHost == "" && c.Username == "" {
		if u, err := amqp.ParseURI(c.URL); err == nil {
			c.VHost = u.Vhost
		}
	}
	if c.VHost == "" {
		c.VHost = "/"
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 100
	}
	if c.Prefetch <= 0 {
		c.Prefetch = c.BatchSize
	}
	if c.MaxConsumers <= 0 {
		c.MaxConsumers = 4
	}
	if c.ScaleInterval <= 0 {
		c.ScaleInterval = time.Second
	}
	if c.ReconnectDelay <= 0 {
		c.ReconnectDelay = 100 * time.Millisecond
	}
	if c.MaxReconnectDelay <= 0 {
		c.MaxReconnectDelay = 5 * time.Second
	}
	if c.RequeueDelay == 0 {
		c.RequeueDelay = 100 * time.Millisecond
	}
	if c.MaxRequeueDelay <= 0 {
		c.MaxRequeueDelay = 5 * time.Second
	}
	if c.MaxDowntime <= 0 {
		c.MaxDowntime = time.Minute
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = 10 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

func (c *Config) validate() error {
	if c.URL == "" {
		return errors.New("rabbitmq: no broker URL")
	}
	if !strings.HasPrefix(c.URL, "amqp://") && !strings.HasPrefix(c.URL, "amqps://") {
		return fmt.Errorf("rabbitmq: broker URL %q is not amqp:// or amqps://", c.URL)
	}
	if c.Queue == "" {
		return errors.New("rabbitmq: no queue")
	}
	return nil
}

// Errors Check, Open and Poll wrap (with the broker's own error), for
// callers that branch on the cause.
var (
	// ErrAuthentication: the broker refused the username or password
	// (AWS: EVENT_SOURCE_AUTHN_ERROR).
	ErrAuthentication = errors.New("authentication failed")
	// ErrAuthorization: the user may not use the virtual host or queue
	// (AWS: EVENT_SOURCE_AUTHZ_ERROR).
	ErrAuthorization = errors.New("not authorized")
	// ErrVHostNotFound: the virtual host does not exist.
	ErrVHostNotFound = errors.New("virtual host not found")
	// ErrQueueNotFound: the queue does not exist in the virtual host.
	ErrQueueNotFound = errors.New("queue not found")
)

// Reasons Lambda gives in StateTransitionReason when it disables an MQ
// mapping on an error that retrying cannot fix (spec MQ-7).
const (
	ReasonAuthN = "EVENT_SOURCE_AUTHN_ERROR"
	ReasonAuthZ = "EVENT_SOURCE_AUTHZ_ERROR"
)

// disabling wraps err in an *esm.DisableError when the broker refused the
// credentials (403 ACCESS_REFUSED at login: EVENT_SOURCE_AUTHN_ERROR) or
// the user's access to the virtual host or queue (EVENT_SOURCE_AUTHZ_ERROR):
// Lambda disables the mapping then instead of retrying (spec MQ-7), and the
// pipeline does the same with the *esm.DisableError. Other errors are
// returned as they are (retried).
func disabling(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrAuthentication):
		return &esm.DisableError{Reason: ReasonAuthN, Err: err}
	case errors.Is(err, ErrAuthorization):
		return &esm.DisableError{Reason: ReasonAuthZ, Err: err}
	}
	return err
}

// classify wraps an amqp091 error with the sentinel of its cause.
func classify(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, amqp.ErrCredentials) || errors.Is(err, amqp.ErrSASL) {
		return fmt.Errorf("%w: %w", ErrAuthentication, err)
	}
	var ae *amqp.Error
	if errors.As(err, &ae) {
		switch {
		case ae.Code == amqp.AccessRefused && strings.Contains(ae.Reason, "Login was refused"):
			return fmt.Errorf("%w: %w", ErrAuthentication, err)
		case ae.Code == amqp.AccessRefused:
			return fmt.Errorf("%w: %w", ErrAuthorization, err)
		case ae.Code == amqp.NotAllowed && strings.Contains(ae.Reason, "not found"):
			return fmt.Errorf("%w: %w", ErrVHostNotFound, err)
		case ae.Code == amqp.NotAllowed:
			return fmt.Errorf("%w: %w", ErrAuthorization, err)
		case ae.Code == amqp.NotFound:
			return fmt.Errorf("%w: %w", ErrQueueNotFound, err)
		}
	}
	return err
}

// dial connects and opens the virtual host.
func (c *Config) dial(ctx context.Context) (*amqp.Connection, error) {
	props := amqp.NewConnectionProperties()
	if c.Name != "" {
		props.SetClientConnectionName("esmd " + c.Name)
	}
	cfg := amqp.Config{
		Vhost:           c.VHost,
		Heartbeat:       c.Heartbeat,
		TLSClientConfig: c.TLS,
		Properties:      props,
		// The context bounds the TCP (and TLS) handshake; the AMQP
		// handshake that follows has its own deadline in amqp091.
		Dial: func(network, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: 10 * time.Second}
			conn, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// amqp091 clears this deadline once connected.
			if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
				conn.Close()
				return nil, err
			}
			return conn, nil
		},
	}
	if c.Username != "" {
		cfg.SASL = []amqp.Authentication{&amqp.PlainAuth{Username: c.Username, Password: c.Password}}
	}
	conn, err := amqp.DialConfig(c.URL, cfg)
	if err != nil {
		err = fmt.Errorf("connect to %s, virtual host %q: %w", redact(c.URL), c.VHost, classify(err))
		if !errors.Is(err, ErrAuthentication) && !errors.Is(err, ErrAuthorization) && !errors.Is(err, ErrVHostNotFound) {
			// Refused, timed out, unresolvable, TLS, or no AMQP broker
			// (whose bytes amqp091 reports as a frame error): one phrase
			// for the API, the detail for the log.
			err = source.ConnectionProblem(err)
		}
		return nil, err
	}
	return conn, nil
}

// redact removes a password from a URL for messages.
func redact(u string) string {
	p, err := amqp.ParseURI(u)
	if err != nil {
		return u
	}
	scheme := p.Scheme
	return fmt.Sprintf("%s://%s", scheme, net.JoinHostPort(p.Host, fmt.Sprint(p.Port)))
}

// Check connects to the broker and checks that the queue exists in the
// virtual host. Its error wraps ErrAuthentication, ErrAuthorization,
// ErrVHostNotFound or ErrQueueNotFound when the broker says so.
func Check(ctx context.Context, cfg Config) error {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return err
	}
	conn, err := cfg.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = backlog(conn, cfg.Queue)
	if err != nil {
		return fmt.Errorf("queue %q in virtual host %q: %w", cfg.Queue, cfg.VHost, err)
	}
	return nil
}

// backlog returns the number of ready messages in a queue, on a channel of
// its own (a passive declare of a missing queue closes its channel).
func backlog(conn *amqp.Connection, queue string) (int, error) {
	ch, err := conn.Channel()
	if err != nil {
		return 0, classify(err)
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(queue, false, false, false, false, nil)
	if err != nil {
		return 0, classify(err)
	}
	return q.Messages, nil
}
