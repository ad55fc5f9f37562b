package documentdb

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/connstring"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/source"
)

// Config says which change stream a Poller reads and how.
type Config struct {
	// URI is the cluster's connection string,
	// mongodb://host:port[,host:port][/?options] (AWS: the cluster endpoint,
	// port 27017). Its options are honoured (replicaSet, tls, tlsCAFile,
	// tlsInsecure, readPreference, ...). TLS is on unless the URI turns it
	// off with tls=false (or ssl=false): DocumentDB requires it (spec DOC-1).
	// Credentials in the URI are used only when Username is empty.
	URI string
	// Username and Password log in with SCRAM (SCRAM-SHA-256 or SCRAM-SHA-1,
	// as the server offers), as a user of the URI's authSource, else of the
	// admin database (AWS: the BASIC_AUTH secret's "username" and
	// "password").
	Username, Password string
	// CAFile is a PEM bundle of the certificate authorities TLS trusts
	// when the URI names no tlsCAFile (esmd's --docdb-ca-file; DocumentDB's
	// is global-bundle.pem). Default: the system's roots.
	CAFile string
	// TLS, when set, is the TLS configuration, whatever the URI and CAFile
	// say (tests trust a server's self-signed certificate with it).
	TLS *tls.Config
	// Database is the database whose change stream is read (AWS:
	// DocumentDBEventSourceConfig.DatabaseName). Required.
	Database string
	// Collection narrows the stream to one collection; empty reads every
	// collection of Database (AWS: DocumentDBEventSourceConfig.CollectionName).
	Collection string
	// FullDocument is "Default" (an update event carries the change only)
	// or "UpdateLookup" (and the document as it is when the event is read)
	// (AWS: DocumentDBEventSourceConfig.FullDocument; default "Default").
	FullDocument string
	// StartingPosition is where a mapping without a checkpoint starts:
	// LATEST (default), TRIM_HORIZON (the oldest event the stream still
	// retains) or AT_TIMESTAMP (Timestamp) (AWS: StartingPosition, spec
	// DOC-4).
	StartingPosition string
	// Timestamp is AT_TIMESTAMP's time (AWS: StartingPositionTimestamp);
	// the stream starts at its whole second.
	Timestamp time.Time
	// Mapping keys the checkpoints (AWS: the mapping's UUID), Positions
	// stores them. Required.
	Mapping   string
	Positions Positions
	// CheckpointInterval coalesces checkpoint writes: the latest position is
	// written at most once per interval (esmd's
	// --docdb-checkpoint-interval, default 100 ms there). 0 writes each
	// checkpoint before Ack returns, so a crash redelivers only the batch
	// in flight.
	CheckpointInterval time.Duration
	// BatchSize is the batchSize of the stream's getMore commands (0: the
	// server's, up to 16 MB of events; a mapping's Config sets its
	// BatchSize, at least 100). It bounds what one read returns, not the
	// function's batches (the batcher's BatchSize).
	BatchSize int32
	// MaxAwaitTime is how long a getMore waits for events on an idle
	// stream (its maxTimeMS; default 1 s, as mongod's default).
	MaxAwaitTime time.Duration
	// ServerSelectionTimeout bounds how long an operation waits for a
	// reachable primary (default 30 s, the driver's).
	ServerSelectionTimeout time.Duration
	// ReconnectDelay and MaxReconnectDelay bound the backoff between
	// attempts to reopen the stream after an error the driver did not
	// resume itself (defaults 100 ms and 5 s).
	ReconnectDelay, MaxReconnectDelay time.Duration
	// MaxDowntime is how long the poller keeps reopening the stream
	// silently; past it Poll returns the last error, which the pipeline
	// reports in LastProcessingResult before it opens the poller again
	// (default 1 min).
	MaxDowntime time.Duration
	// EventSourceARN is the cluster's ARN, for logs.
	EventSourceARN string
	// Log receives the poller's logs (default: discard).
	Log *slog.Logger
}

// Positions is where a Poller keeps its checkpoint: checkpoint.Store.
type Positions interface {
	Position(ctx context.Context, mapping, lane string) (pos string, ok bool, err error)
	SetPosition(ctx context.Context, mapping, lane, pos string) error
}

// Starting positions (esm.Config.StartingPosition).
const (
	Latest      = "LATEST"
	TrimHorizon = "TRIM_HORIZON"
	AtTimestamp = "AT_TIMESTAMP"
)

func (c *Config) setDefaults() {
	if c.FullDocument == "" {
		c.FullDocument = "Default"
	}
	if c.StartingPosition == "" {
		c.StartingPosition = Latest
	}
	if c.MaxAwaitTime <= 0 {
		c.MaxAwaitTime = time.Second
	}
	if c.ServerSelectionTimeout <= 0 {
		c.ServerSelectionTimeout = 30 * time.Second
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
	if c.Log == nil {
		c.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

func (c *Config) validate() error {
	switch {
	case c.URI == "":
		return errors.New("documentdb: no cluster URI")
	case c.Database == "":
		return errors.New("documentdb: no database")
	case c.Mapping == "" || c.Positions == nil:
		return errors.New("documentdb: Config.Mapping and Config.Positions are required")
	}
	switch c.FullDocument {
	case "Default", "UpdateLookup":
	default:
		return fmt.Errorf("documentdb: FullDocument %q: want Default or UpdateLookup", c.FullDocument)
	}
	switch c.StartingPosition {
	case Latest, TrimHorizon:
	case AtTimestamp:
		if c.Timestamp.IsZero() {
			return errors.New("documentdb: AT_TIMESTAMP without a Timestamp")
		}
	default:
		return fmt.Errorf("documentdb: StartingPosition %q: want LATEST, TRIM_HORIZON or AT_TIMESTAMP", c.StartingPosition)
	}
	return nil
}

// clientOptions returns the driver's options for the cluster: the URI's,
// with TLS on unless the URI turns it off, the credentials, and esmd's
// name in the server's logs.
func (c *Config) clientOptions() (*options.ClientOptions, error) {
	cs, err := connstring.ParseAndValidate(c.URI)
	if err != nil {
		return nil, fmt.Errorf("documentdb: cluster URI: %w", err)
	}
	o := options.Client().ApplyURI(c.URI).SetAppName("esmd").SetServerSelectionTimeout(c.ServerSelectionTimeout)
	switch {
	case c.TLS != nil:
		o.SetTLSConfig(c.TLS.Clone())
	case cs.SSLSet && !cs.SSL:
		// tls=false: a cluster with TLS turned off, or a local test server.
	case cs.SSLCaFileSet || cs.SSLInsecureSet:
		// ApplyURI made the TLS configuration from the URI's own options.
	default:
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.CAFile != "" {
			pem, err := os.ReadFile(c.CAFile)
			if err != nil {
				return nil, fmt.Errorf("documentdb: CA bundle: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("documentdb: CA bundle %s holds no PEM certificate", c.CAFile)
			}
		}
		// The driver sets ServerName per host when it is empty.
		o.SetTLSConfig(tc)
	}
	if c.Username != "" {
		src := "admin"
		if cs.AuthSourceSet {
			src = cs.AuthSource
		}
		o.SetAuth(options.Credential{Username: c.Username, Password: c.Password, AuthSource: src})
	}
	return o, nil
}

// Errors Open and Poll wrap (with the driver's own error), for callers
// that branch on the cause.
var (
	// ErrAuthentication: the cluster refused the username or password
	// (code 18 AuthenticationFailed; AWS: EVENT_SOURCE_AUTHN_ERROR).
	ErrAuthentication = errors.New("authentication failed")
	// ErrHistoryLost: the change stream no longer holds the position the
	// mapping would read from (code 286 ChangeStreamHistoryLost): the
	// events after it expired from the change stream's retention.
	ErrHistoryLost = errors.New("the events after the mapping's position have expired from the change stream")
)

// Reasons esmd gives in StateTransitionReason when it disables a DocumentDB
// mapping on an error that retrying cannot fix.
const (
	// ReasonAuthN: wrong credentials, as Lambda's MQ and Kafka mappings
	// report them (spec MQ-7).
	ReasonAuthN = "EVENT_SOURCE_AUTHN_ERROR"
	// ReasonHistoryLost: the events after the mapping's position expired
	// from the change stream. Lambda disables the mapping then (spec DOC-6)
	// and tells the user to create a new one with a starting position of
	// their choice, but documents no StateTransitionReason for it. esmd
	// picks ESM_CONFIG_NOT_VALID from the codes Lambda documents for
	// mappings it stops (spec MQ-7: "The event source mapping configuration
	// is not valid"): what the mapping was set up to read (its starting
	// position and the progress since) can no longer be read, and only a
	// new mapping fixes that; the change stream itself is reachable and
	// the credentials work, so the EVENT_SOURCE_* codes would mislead.
	ReasonHistoryLost = "ESM_CONFIG_NOT_VALID"
)

// Server error codes the poller branches on (mongod's numbers, which
// DocumentDB uses).
const (
	codeAuthenticationFailed    = 18
	codeChangeStreamHistoryLost = 286
)

// classify wraps a driver error with the sentinel of its cause.
func classify(err error) error {
	var se mongo.ServerError
	if err == nil || !errors.As(err, &se) {
		return err
	}
	switch {
	case se.HasErrorCode(codeAuthenticationFailed):
		return fmt.Errorf("%w: %w", ErrAuthentication, err)
	case se.HasErrorCode(codeChangeStreamHistoryLost):
		return fmt.Errorf("%w: %w", ErrHistoryLost, err)
	}
	return err
}

// disabling wraps err in an *esm.DisableError when retrying cannot fix it:
// refused credentials (EVENT_SOURCE_AUTHN_ERROR) and a position that fell
// out of the change stream's history (ReasonHistoryLost; spec DOC-6). The
// pipeline then disables the mapping with the reason and shows the error
// in LastProcessingResult. Other errors are returned as they are.
func disabling(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrAuthentication):
		return &esm.DisableError{Reason: ReasonAuthN, Err: err}
	case errors.Is(err, ErrHistoryLost):
		msg := "documentdb: " + ErrHistoryLost.Error() +
			", so the mapping is disabled; create a new event source mapping with the starting position of your choice"
		var se mongo.ServerError
		if errors.As(err, &se) {
			msg += " (server: " + se.Error() + ")"
		}
		return &esm.DisableError{Reason: ReasonHistoryLost, Err: &wrapped{msg: msg, err: err}}
	}
	var se mongo.ServerError
	if !errors.As(err, &se) && !errors.Is(err, context.Canceled) {
		// No server answered (refused, timed out, unresolvable, TLS, a
		// peer that is no DocumentDB): AWS's "Connection error" to an
		// API caller, the detail for the log only.
		return source.ConnectionProblem(err)
	}
	return err
}

// wrapped is an error with its own message that wraps another.
type wrapped struct {
	msg string
	err error
}

func (w *wrapped) Error() string { return w.msg }
func (w *wrapped) Unwrap() error { return w.err }
