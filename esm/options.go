package esm

import (
	"context"
	"io"
	"log/slog"
	"time"
)

// Runner runs the data plane of one mapping: it reads the mapping's source,
// filters, batches and invokes, until ctx is cancelled. Run returns nil or
// ctx.Err() when cancelled; any other error is reported in the mapping's
// LastProcessingResult and Run is called again after a backoff, so a broken
// source never takes down other mappings.
//
// The pollers issues implement one Runner per source kind.
type Runner interface {
	Run(ctx context.Context, m *Mapping, r Reporter) error
}

// RunnerFunc adapts a function to Runner.
type RunnerFunc func(ctx context.Context, m *Mapping, r Reporter) error

// Run calls f.
func (f RunnerFunc) Run(ctx context.Context, m *Mapping, r Reporter) error { return f(ctx, m, r) }

// SourceChecker is implemented by a Runner that can check, at create time,
// that its source exists (AWS answers "Stream not found: <arn>" and the SQS
// NonExistentQueue message). It returns an *Error to refuse the mapping.
type SourceChecker interface {
	CheckSource(ctx context.Context, src Source, cfg *Config) error
}

// AccessChecker is implemented by a Runner that checks, at create and at
// update, that the secrets a mapping names may be sent where the mapping
// would send them (a secret restricted to some endpoints). It returns an
// *Error to refuse the request.
type AccessChecker interface {
	CheckAccess(ctx context.Context, src Source, cfg *Config) error
}

// Reporter is how a running pipeline reports back to the engine.
type Reporter interface {
	// ProcessingResult sets LastProcessingResult ("OK", "PROBLEM: ...").
	ProcessingResult(result string)
	// Disable stops the mapping as Lambda does on an unrecoverable error:
	// State becomes Disabled and StateTransitionReason the given code
	// (for example ESM_CONFIG_NOT_VALID or EVENT_SOURCE_AUTHN_ERROR).
	Disable(reason string)
}

// FunctionChecker looks a function up (Lambda GetFunction) so Create can
// refuse a function that does not exist.
type FunctionChecker interface {
	FunctionExists(ctx context.Context, functionArn string) (bool, error)
}

// Store persists mapping definitions; checkpoint.Store implements it.
type Store interface {
	SaveMapping(ctx context.Context, uuid string, data []byte) error
	DeleteMapping(ctx context.Context, uuid string) error
	LoadMappings(ctx context.Context) (map[string][]byte, error)
}

// Option configures an Engine.
type Option func(*options)

type options struct {
	region, account string
	store           Store
	runners         map[Source]Runner
	functions       FunctionChecker
	patterns        func(src Source, patterns []string) error
	log             *slog.Logger
	now             func() time.Time
	maxFilters      int
	retryMin        time.Duration
	retryMax        time.Duration
}

// WithRegion sets the region used to resolve function names and form ARNs
// (default us-east-1). Corresponds to the AWS region of the Lambda endpoint.
func WithRegion(r string) Option { return func(o *options) { o.region = r } }

// WithAccount sets the account id used in ARNs (default 000000000000).
func WithAccount(a string) Option { return func(o *options) { o.account = a } }

// WithStore persists mappings; without it they live in memory only.
func WithStore(s Store) Option { return func(o *options) { o.store = s } }

// WithRunner registers the Runner for a source kind.
func WithRunner(src Source, r Runner) Option {
	return func(o *options) { o.runners[src] = r }
}

// WithFunctionChecker enables the create-time function lookup.
func WithFunctionChecker(f FunctionChecker) Option { return func(o *options) { o.functions = f } }

// WithPatternValidator sets the FilterCriteria pattern compiler used to
// refuse invalid patterns with "Invalid filter pattern definition.". It is
// given the mapping's source, since some checks are per source. The engine
// enforces the filter-count quota itself.
func WithPatternValidator(f func(src Source, patterns []string) error) Option {
	return func(o *options) { o.patterns = f }
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithMaxFilters sets the filters-per-mapping quota (default 5, AWS allows
// up to 10 with a quota increase).
func WithMaxFilters(n int) Option { return func(o *options) { o.maxFilters = n } }

// WithRunnerBackoff sets the delay before a failed Runner is started again,
// doubling from min to max (default 1s to 1m). As in backoff.New, a min of
// zero or less means backoff.DefaultInitial and a max below min means
// backoff.DefaultMax.
func WithRunnerBackoff(min, max time.Duration) Option {
	return func(o *options) { o.retryMin, o.retryMax = min, max }
}

func defaultOptions() options {
	return options{
		region:     "us-east-1",
		account:    "000000000000",
		runners:    map[Source]Runner{},
		log:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		now:        time.Now,
		maxFilters: DefaultMaxFilters,
		retryMin:   time.Second,
		retryMax:   time.Minute,
	}
}

// DisableError is returned (wrapped) by a Runner's source when Lambda would
// disable the mapping rather than keep retrying: wrong credentials
// (EVENT_SOURCE_AUTHN_ERROR), a missing permission (EVENT_SOURCE_AUTHZ_ERROR),
// a configuration the source refuses (ESM_CONFIG_NOT_VALID). The pipeline
// reports Err in LastProcessingResult and disables the mapping with Reason
// as its StateTransitionReason.
type DisableError struct {
	Reason string
	Err    error
}

func (e *DisableError) Error() string {
	if e.Err == nil {
		return e.Reason
	}
	return e.Err.Error()
}

func (e *DisableError) Unwrap() error { return e.Err }
