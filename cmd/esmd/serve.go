package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/esmd/esmd/api"
	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/filter"
	"github.com/esmd/esmd/internal/awsconfig"
	"github.com/esmd/esmd/pipeline"
	"github.com/esmd/esmd/source"
)

var errHelp = errors.New("help")

type serveOpts struct{ *common }

func serveFlags(out io.Writer) *serveOpts {
	return &serveOpts{newCommon("esmd serve", out, "127.0.0.1:9000")}
}

func serveCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := serveFlags(stderr)
	if err := parse(o.fs, args); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	if err := o.validate(); err != nil {
		fmt.Fprintln(stderr, "esmd serve:", err)
		return errUsage
	}
	log := o.logger(stderr)
	return serve(ctx, o.common, log, nil)
}

// serve runs the engine and, when c.addr is set, the API, until ctx is
// done. ready, when not nil, is called with the engine once the API listens.
func serve(ctx context.Context, c *common, log *slog.Logger, ready func(*esm.Engine, string) error) error {
	// The API binds first: a port clash or unreadable credentials end esmd
	// before the store is opened and before any pipeline polls.
	var front *apiFront
	if c.addr != "" {
		var err error
		if front, err = listenAPI(c, log); err != nil {
			return err
		}
		defer front.ln.Close()
	}
	store, err := openStore(ctx, c, log)
	if err != nil {
		return err
	}
	defer store.Close()

	opts := []esm.Option{
		esm.WithRegion(c.region),
		esm.WithAccount(c.account),
		esm.WithStore(store),
		esm.WithLogger(log),
		esm.WithMaxFilters(c.maxFilters),
		esm.WithPatternValidator(patternValidator(c.sources)),
	}
	check := c.functionCheck == "always" || c.functionCheck == "auto" && c.invokeMode == "aws" && c.lambdaEndpointConfigured()
	if check {
		fc, err := newFunctionChecker(ctx, c)
		if err != nil {
			return err
		}
		opts = append(opts, esm.WithFunctionChecker(fc))
	} else {
		log.Info("functions are not looked up on create", "function-check", c.functionCheck, "invoke-mode", c.invokeMode)
	}
	metrics := pipeline.NewMetrics()
	runners, release, err := dataPlane(ctx, c, log, store, metrics)
	if err != nil {
		return err
	}
	defer release()
	opts = append(opts, runners...)
	engine, err := esm.New(ctx, opts...)
	if err != nil {
		return err
	}
	engine.Start()
	defer func() {
		// Pipelines drain their invocations in flight for up to
		// --drain-timeout, then acknowledge and close their sources.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), max(c.drainTimeout, 0)+20*time.Second)
		defer cancel()
		if err := engine.Close(cctx); err != nil {
			log.Error("stopping pipelines", "err", err)
		}
	}()

	addr := ""
	var srv *http.Server
	errc := make(chan error, 1)
	if front != nil {
		addr = front.ln.Addr().String()
		// The store backup endpoint sits with the API, behind its guards.
		h := api.Protect(withMetrics(withLongBackup(withLanes(withStoreBackup(withReplay(api.New(engine, log), engine, log), store, log), store, log)), metrics), front.policy)
		srv = api.NewServer(h, front.limiter, max(time.Minute, c.drainTimeout+30*time.Second), log)
		go func() { errc <- srv.Serve(front.ln) }()
		log.Info("esmd listening", "addr", "http://"+addr, "data-dir", c.dataDir, "region", c.region, "version", versionString())
	}
	if ready != nil {
		if err := ready(engine, addr); err != nil {
			if srv != nil {
				srv.Close()
			}
			return err
		}
	}
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-errc:
		return fmt.Errorf("API server: %w", err)
	}
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			log.Warn("API shutdown", "err", err)
		}
	}
	return nil
}

// apiFront is the API's listener and the policy its requests pass.
type apiFront struct {
	ln      net.Listener
	limiter *api.ConnLimiter
	policy  api.Policy
}

// listenAPI loads the API credentials, binds c.addr and bounds its
// connections (--max-connections, else api.DefaultMaxConns or fewer when
// the file limit is low, keeping descriptors for pipelines and the store).
func listenAPI(c *common, log *slog.Logger) (*apiFront, error) {
	policy := api.Policy{AllowedHosts: c.allowedHosts, AllowedOrigins: c.allowedOrigins}
	if host, _, err := net.SplitHostPort(c.addr); err == nil {
		policy.BindHost = host
	}
	if c.apiCredentials != "" {
		creds, err := api.LoadCredentials(c.apiCredentials, os.Getenv, func(msg string) { log.Warn(msg) })
		if err != nil {
			return nil, err
		}
		policy.Verifier = api.NewVerifier(creds, nil)
		log.Info("API requests must be SigV4-signed", "service", api.SigningService, "access-keys", strings.Join(creds.IDs(), ","))
	} else if !isLoopback(c.addr) {
		log.Warn("API requests are not authenticated on a non-loopback address (--allow-unauthenticated)", "addr", c.addr)
	}
	conns := c.maxConns
	if conns == 0 {
		conns = api.DefaultMaxConns
		if lim := fileLimit(); lim > 0 && lim < uint64(conns)+256 {
			conns = max(int(lim/2), 1)
			log.Warn("few file descriptors: fewer API connections", "nofile", lim, "max-connections", conns)
		}
	}
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", c.addr, err)
	}
	lim := api.NewConnLimiter(conns)
	return &apiFront{ln: lim.Listener(ln), limiter: lim, policy: policy}, nil
}

// functionChecker looks functions up with Lambda GetFunction.
type functionChecker struct{ client *lambda.Client }

func newFunctionChecker(ctx context.Context, c *common) (*functionChecker, error) {
	cfg, err := awsconfig.Load(ctx, c.region, c.lambdaEndpoint != "")
	if err != nil {
		return nil, err
	}
	client := lambda.NewFromConfig(cfg, func(o *lambda.Options) {
		if c.lambdaEndpoint != "" {
			o.BaseEndpoint = &c.lambdaEndpoint
		}
	})
	return &functionChecker{client: client}, nil
}

func (f *functionChecker) FunctionExists(ctx context.Context, arn string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := f.client.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: &arn})
	var nf *lambdatypes.ResourceNotFoundException
	if errors.As(err, &nf) {
		return false, nil
	}
	return err == nil, err
}

// patternValidator validates FilterCriteria patterns with the filter
// package, including the source's create-time checks, with the record
// layout its descriptor names (a source without one is matched by its
// name); the engine enforces the filter-count quota itself (--max-filters).
func patternValidator(sources []*source.Descriptor) func(src esm.Source, p []string) error {
	return func(src esm.Source, p []string) error {
		fs, err := filter.ParseSource(string(src))
		if err != nil {
			return err
		}
		for _, d := range sources {
			if d.Source == src {
				fs = d.Filter
			}
		}
		_, err = filter.Compile(p, filter.WithSource(fs), filter.WithMaxFilters(0))
		return err
	}
}

// withMetrics serves GET /metrics (the mappings' event counts and lane
// figures in the Prometheus text format) beside the Lambda API, whose
// routes all start with a version date.
func withMetrics(api http.Handler, m *pipeline.Metrics) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" {
			m.ServeHTTP(w, r)
			// The process's goroutines, under the Prometheus Go
			// collector's name (esmd bench's scale mode reads it).
			fmt.Fprintf(w, "# HELP go_goroutines Number of goroutines that currently exist.\n# TYPE go_goroutines gauge\ngo_goroutines %d\n", runtime.NumGoroutine())
			return
		}
		api.ServeHTTP(w, r)
	})
}

// withLongBackup gives the store backup an hour to send the copy: the
// server's WriteTimeout is sized for API calls.
func withLongBackup(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == storeBackupPath {
			_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(time.Hour))
		}
		next.ServeHTTP(w, r)
	})
}
