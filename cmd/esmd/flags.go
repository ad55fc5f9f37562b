package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/esmd/esmd/api"
	"github.com/esmd/esmd/source"
)

// common holds the flags serve and run share.
type common struct {
	fs             *flag.FlagSet
	addr           string
	dataDir        string
	store          string
	workerID       string
	leaseTTL       time.Duration
	region         string
	account        string
	logFormat      string
	logLevel       string
	lambdaEndpoint string
	invokeMode     string
	invokePath     string
	invokeBy       string
	functionCheck  string
	maxFilters     int
	secretsFile    string
	drainTimeout   time.Duration
	// API protection (api.Policy, api.NewServer).
	apiCredentials       string
	allowUnauthenticated bool
	allowedHosts         csvFlag
	allowedOrigins       csvFlag
	requireAllowed       bool
	maxConns             int
	// sources are the sources this esmd reads (sources()).
	sources []*source.Descriptor
	// source holds the values of the flags the sources add
	// (source.Descriptor.Flags), by name.
	source map[string]*listFlag
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// csvFlag is a repeatable flag whose values may also be comma-separated.
type csvFlag []string

func (l *csvFlag) String() string { return strings.Join(*l, ",") }
func (l *csvFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

func newCommon(name string, out io.Writer, defaultAddr string) *common {
	c := &common{fs: flag.NewFlagSet(name, flag.ContinueOnError)}
	c.fs.SetOutput(out)
	fs := c.fs
	fs.StringVar(&c.addr, "addr", defaultAddr, "address the Lambda event-source-mapping API listens on (loopback only by default)")
	fs.StringVar(&c.dataDir, "data-dir", defaultDataDir(), "directory of the embedded store (mappings, checkpoints)")
	fs.StringVar(&c.store, "store", os.Getenv("ESMD_STORE"), storeUsage)
	fs.StringVar(&c.workerID, "worker-id", "", "this worker's id among the workers sharing --store: its stream shards' leases, Kafka static membership, /metrics (default: a random id kept in --data-dir)")
	fs.DurationVar(&c.leaseTTL, "lease-duration", 10*time.Second, "with --store postgres: how long a stream shard's lease, and a worker's presence that splits queue concurrency caps, last without renewal; a dead worker's shards and share move after it")
	fs.StringVar(&c.region, "region", envOr("", "AWS_REGION", "AWS_DEFAULT_REGION"), "AWS region used to resolve function names and form ARNs (default: the SDK's region, else us-east-1)")
	fs.StringVar(&c.account, "account-id", "000000000000", "account id used in the ARNs esmd forms")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&c.lambdaEndpoint, "lambda-endpoint", "", "Lambda endpoint URL for GetFunction and Invoke (default: AWS_ENDPOINT_URL_LAMBDA / AWS_ENDPOINT_URL, else AWS)")
	fs.StringVar(&c.invokeMode, "invoke-mode", "aws", "aws: a Lambda-compatible Invoke API; rie: the AWS Lambda Runtime Interface Emulator (one invocation at a time, no GetFunction)")
	fs.StringVar(&c.invokePath, "invoke-path", "direct", "how Invoke requests are sent: direct (net/http with the SDK's signer, credentials and endpoint) or sdk (the SDK Lambda client)")
	fs.StringVar(&c.invokeBy, "invoke-by", "arn", "how Invoke names the function: arn, or name (the function's name alone, which sam local start-lambda needs; esmd run -f TEMPLATE uses name unless this flag is given)")
	fs.StringVar(&c.functionCheck, "function-check", "auto", "look functions up with GetFunction on create: always, never, or auto (when a Lambda endpoint or AWS credentials are configured; esmd run -f TEMPLATE: never, unless this flag is given)")
	fs.IntVar(&c.maxFilters, "max-filters", 5, "FilterCriteria filters allowed per mapping (AWS: 5, up to 10 with a quota increase)")
	fs.StringVar(&c.secretsFile, "secrets-file", "", "JSON object from secret ARN to the secret's fields ({\"username\": ..., \"password\": ...}), answering for AWS Secrets Manager")
	fs.DurationVar(&c.drainTimeout, "drain-timeout", 10*time.Second, "when a mapping stops (disable, update, delete, shutdown): how long invocations in flight may finish and be acknowledged before they are cancelled")
	fs.StringVar(&c.apiCredentials, "api-credentials", "", "require AWS SigV4-signed API requests, with the keys of this file (AWS shared-credentials format: [section] aws_access_key_id / aws_secret_access_key, one or more), or 'env' for AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (default: unsigned requests accepted, on a loopback --addr only)")
	fs.BoolVar(&c.allowUnauthenticated, "allow-unauthenticated", false, "serve the API on a non-loopback --addr without --api-credentials: anyone who reaches the port can manage mappings")
	fs.Var(&c.allowedHosts, "allowed-hosts", "host names clients reach the API by, accepted in the Host header besides the --addr host, localhost and IP addresses (comma-separated or repeated; * for any, with --api-credentials only); other names are refused, which defeats DNS rebinding")
	fs.Var(&c.allowedOrigins, "allowed-origins", "browser origins (scheme://host[:port], comma-separated or repeated; * for any, with --api-credentials only) whose requests are accepted and answered with CORS headers (default: none; requests without an Origin are not affected)")
	fs.BoolVar(&c.requireAllowed, "require-allowed-endpoints", false, "refuse every secret (of --secrets-file or Secrets Manager) without \"esmd:allowed-endpoints\": no secret can then be sent to an endpoint a mapping names unless the secret says so")
	fs.IntVar(&c.maxConns, "max-connections", 0, fmt.Sprintf("bound on open API connections (default %d, fewer when the file-descriptor limit is low)", api.DefaultMaxConns))
	c.sources = sources()
	c.source = map[string]*listFlag{}
	for _, d := range c.sources {
		for _, f := range d.Flags {
			if c.source[f.Name] != nil {
				continue // a flag several sources share (MSK and self-managed Kafka)
			}
			v := &listFlag{}
			c.source[f.Name] = v
			fs.Var(v, f.Name, f.Usage)
		}
	}
	return c
}

// set reports whether the flag was given on the command line.
func (c *common) set(name string) bool {
	found := false
	c.fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}

func (c *common) usage(w io.Writer) {
	c.fs.SetOutput(w)
	c.fs.PrintDefaults()
}

func (c *common) validate() error {
	switch c.logFormat {
	case "text", "json":
	default:
		return fmt.Errorf("--log-format must be text or json, not %q", c.logFormat)
	}
	switch c.invokeMode {
	case "aws", "rie":
	default:
		return fmt.Errorf("--invoke-mode must be aws or rie, not %q", c.invokeMode)
	}
	switch c.invokePath {
	case "direct", "sdk":
	default:
		return fmt.Errorf("--invoke-path must be direct or sdk, not %q", c.invokePath)
	}
	switch c.invokeBy {
	case "arn", "name":
	default:
		return fmt.Errorf("--invoke-by must be arn or name, not %q", c.invokeBy)
	}
	switch c.functionCheck {
	case "auto", "always", "never":
	default:
		return fmt.Errorf("--function-check must be auto, always or never, not %q", c.functionCheck)
	}
	if c.maxFilters < 1 || c.maxFilters > 10 {
		return fmt.Errorf("--max-filters must be between 1 and 10")
	}
	if c.region == "" {
		c.region = "us-east-1"
	}
	for _, o := range c.allowedOrigins {
		if o != "*" && !validOrigin(o) {
			return fmt.Errorf("--allowed-origins: %q is not an origin (scheme://host[:port])", o)
		}
	}
	if c.apiCredentials == "" {
		// Without signatures, the Host and Origin checks are all that keep
		// web pages out: a wildcard gives the API to any page, through DNS
		// rebinding (any Host) or CORS (any Origin).
		if slices.Contains(c.allowedHosts, "*") {
			return errors.New("--allowed-hosts * without --api-credentials would let any web page manage mappings through DNS rebinding: " +
				"name the hosts clients use, or give --api-credentials")
		}
		if slices.Contains(c.allowedOrigins, "*") {
			return errors.New("--allowed-origins * without --api-credentials would let any web page manage mappings: " +
				"name the origins, or give --api-credentials")
		}
	}
	if c.maxConns < 0 {
		return fmt.Errorf("--max-connections must not be negative")
	}
	if c.addr != "" && c.apiCredentials == "" && !c.allowUnauthenticated && !isLoopback(c.addr) {
		return fmt.Errorf("--addr %s is not a loopback address and no --api-credentials are given: anyone who reaches the port "+
			"could create mappings, use the secrets of --secrets-file and read them back through the brokers they name. "+
			"Give --api-credentials FILE (or --api-credentials env), bind 127.0.0.1, or pass --allow-unauthenticated "+
			"if the network itself is trusted", c.addr)
	}
	return nil
}

// isLoopback reports whether a listen address binds loopback only.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func validOrigin(o string) bool {
	u, err := url.Parse(o)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" &&
		(u.Path == "" || u.Path == "/") && u.RawQuery == "" && u.User == nil
}

func (c *common) logger(w io.Writer) *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.logLevel)); err != nil {
		lvl = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lvl}
	if c.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// lambdaEndpointConfigured reports whether Lambda calls have somewhere to
// go other than the public AWS endpoint without credentials.
func (c *common) lambdaEndpointConfigured() bool {
	return c.lambdaEndpoint != "" || os.Getenv("AWS_ENDPOINT_URL_LAMBDA") != "" || os.Getenv("AWS_ENDPOINT_URL") != "" ||
		os.Getenv("AWS_ACCESS_KEY_ID") != "" || os.Getenv("AWS_PROFILE") != ""
}

func envOr(def string, keys ...string) string {
	for _, k := range keys {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	return def
}

// defaultDataDir is $XDG_STATE_HOME/esmd, else ~/.local/state/esmd.
func defaultDataDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "esmd")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "esmd")
	}
	return filepath.Join(os.TempDir(), "esmd")
}

// parse parses args, treating -h as a request for help.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return errHelp
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		return errUsage
	}
	return nil
}
