package activemq

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

	"github.com/go-stomp/stomp/v3"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/source"
)

// Config says which queue a Poller reads and how.
type Config struct {
	// Endpoints are the broker's STOMP endpoints, stomp://host:port or
	// stomp+ssl://host:port (TLS), tried in turn (AWS: an active/standby
	// broker's two instances).
	Endpoints []string
	// Username and Password log in (AWS: the BASIC_AUTH secret).
	Username, Password string
	// Queue is the queue to consume (AWS: Queues[0]).
	Queue string
	// EventSourceARN is the broker's ARN (the event's eventSourceArn).
	EventSourceARN string
	// BatchSize is the mapping's BatchSize (default 100): the poller deals
	// a batch's worth of records to each lane in turn.
	BatchSize int
	// Lanes is how many lanes the records are spread over, the
	// invocations in flight (default 5, spec MQ-3).
	Lanes int
	// Prefetch is the subscription's activemq.prefetchSize, the messages
	// held unacknowledged (default Lanes*BatchSize, at most 10,000).
	Prefetch int
	// TLS configures stomp+ssl:// connections (default: system roots).
	TLS *tls.Config
	// Name identifies the poller in record IDs (AWS: the mapping's UUID).
	Name string
	// ReconnectDelay and MaxReconnectDelay bound the backoff between
	// attempts to reconnect (defaults 100 ms and 5 s).
	ReconnectDelay, MaxReconnectDelay time.Duration
	// MaxDowntime is how long the poller keeps trying to reconnect
	// silently; past it Poll returns the last error (default 1 min).
	MaxDowntime time.Duration
	// Heartbeat is the interval of the poller's STOMP heart-beats (default
	// 10 s); it asks the broker for none.
	Heartbeat time.Duration
	// Log receives the poller's logs (default: discard).
	Log *slog.Logger

	// wrap, when set, wraps each connection to the broker (tests: count
	// the frames, cut the connection).
	wrap func(net.Conn) net.Conn
}

func (c *Config) setDefaults() {
	if c.BatchSize <= 0 {
		c.BatchSize = 100
	}
	if c.Lanes <= 0 {
		c.Lanes = 5
	}
	if c.Prefetch <= 0 {
		c.Prefetch = max(c.BatchSize, min(c.Lanes*c.BatchSize, 10000))
	}
	if c.ReconnectDelay <= 0 {
		c.ReconnectDelay = 100 * time.Millisecond
	}
	if c.MaxReconnectDelay <= 0 {
		c.MaxReconnectDelay = 5 * time.Second
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
	if len(c.Endpoints) == 0 {
		return errors.New("activemq: the broker has no STOMP endpoint (stomp:// or stomp+ssl://)")
	}
	for _, e := range c.Endpoints {
		if _, _, err := splitEndpoint(e); err != nil {
			return err
		}
	}
	if c.Queue == "" {
		return errors.New("activemq: no queue")
	}
	return nil
}

// STOMPEndpoints returns the endpoints of a broker's list (DescribeBroker's,
// or --mq-broker's comma-separated value) that the poller speaks:
// stomp:// and stomp+ssl:// (also stomp+tls://), in their order.
func STOMPEndpoints(list []string) []string {
	var out []string
	for _, e := range list {
		e = strings.TrimSpace(e)
		if _, _, err := splitEndpoint(e); err == nil {
			out = append(out, e)
		}
	}
	return out
}

func splitEndpoint(e string) (addr string, tls bool, err error) {
	scheme, addr, ok := strings.Cut(e, "://")
	if !ok || addr == "" {
		return "", false, fmt.Errorf("activemq: endpoint %q is not scheme://host:port", e)
	}
	addr = strings.TrimSuffix(addr, "/")
	switch scheme {
	case "stomp", "tcp":
		return addr, false, nil
	case "stomp+ssl", "stomp+tls", "stomp+nio+ssl":
		return addr, true, nil
	}
	return "", false, fmt.Errorf("activemq: endpoint %q is not stomp:// or stomp+ssl://", e)
}

// ErrAuthentication: the broker refused the username or password
// (AWS: EVENT_SOURCE_AUTHN_ERROR).
var ErrAuthentication = errors.New("authentication failed")

// ReasonAuthN is the StateTransitionReason of a mapping disabled because
// the broker refused its credentials (spec MQ-7).
const ReasonAuthN = "EVENT_SOURCE_AUTHN_ERROR"

// disabling wraps an authentication error in an *esm.DisableError, on
// which the pipeline disables the mapping as Lambda does. Any other failure
// to connect (refused, timed out, unresolvable, TLS, a peer that is no
// STOMP broker) is AWS's "Connection error" to an API caller, its detail
// for the log only.
func disabling(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrAuthentication):
		return &esm.DisableError{Reason: ReasonAuthN, Err: err}
	}
	return source.ConnectionProblem(err)
}

// dial connects to one endpoint and logs in. ActiveMQ answers refused
// credentials with an ERROR frame "User name [x] or password is invalid.".
func (c *Config) dial(ctx context.Context, endpoint string) (*stomp.Conn, error) {
	addr, useTLS, err := splitEndpoint(endpoint)
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", endpoint, err)
	}
	if useTLS {
		cfg := c.TLS.Clone()
		if cfg == nil {
			cfg = &tls.Config{}
		}
		if cfg.ServerName == "" {
			host, _, _ := net.SplitHostPort(addr)
			cfg.ServerName = host
		}
		nc = tls.Client(nc, cfg)
	}
	if c.wrap != nil {
		nc = c.wrap(nc)
	}
	if err := nc.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		nc.Close()
		return nil, err
	}
	opts := []func(*stomp.Conn) error{
		// The poller sends heart-beats (the broker drops a consumer that
		// went silent) but asks for none: ActiveMQ 5.17 promised them and
		// then left an idle connection silent past go-stomp's read
		// timeout (about 15 s with 10 s), which would reconnect an idle
		// mapping over and over. A broker that dies closes the TCP
		// connection, which the poller notices at once.
		stomp.ConnOpt.HeartBeat(c.Heartbeat, 0),
		stomp.ConnOpt.DisconnectReceiptTimeout(2 * time.Second),
		stomp.ConnOpt.Logger(logger{c.Log}),
		stomp.ConnOpt.Host("/"),
	}
	if c.Username != "" {
		opts = append(opts, stomp.ConnOpt.Login(c.Username, c.Password))
	}
	conn, err := stomp.Connect(nc, opts...)
	if err != nil {
		nc.Close()
		if strings.Contains(err.Error(), "password is invalid") || strings.Contains(err.Error(), "not authenticated") {
			err = fmt.Errorf("%w: %w", ErrAuthentication, err)
		}
		return nil, fmt.Errorf("log in to %s: %w", endpoint, err)
	}
	if err := nc.SetDeadline(time.Time{}); err != nil {
		_ = conn.MustDisconnect()
		return nil, err
	}
	return conn, nil
}

// logger sends go-stomp's logs to slog at debug level (it logs every
// subscription's end at info level).
type logger struct{ l *slog.Logger }

func (g logger) Debugf(f string, v ...any)   { g.l.Debug(fmt.Sprintf(f, v...)) }
func (g logger) Infof(f string, v ...any)    { g.l.Debug(fmt.Sprintf(f, v...)) }
func (g logger) Warningf(f string, v ...any) { g.l.Debug(fmt.Sprintf(f, v...)) }
func (g logger) Errorf(f string, v ...any)   { g.l.Debug(fmt.Sprintf(f, v...)) }
func (g logger) Debug(m string)              { g.l.Debug(m) }
func (g logger) Info(m string)               { g.l.Debug(m) }
func (g logger) Warning(m string)            { g.l.Debug(m) }
func (g logger) Error(m string)              { g.l.Debug(m) }
