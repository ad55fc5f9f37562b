package dispatcher

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Class says what a mapping must do after an Invoke error (spec
// lambda-esm-api.md 10.3).
type Class uint8

const (
	// ClassRetry (R): a transient problem before or around execution. Back
	// off (honour RetryAfter) and retry the same batch; it does not count
	// against MaximumRetryAttempts.
	ClassRetry Class = iota + 1
	// ClassRetryConfig (RC): the function's configuration is broken. Retry
	// with long, capped backoff and surface "PROBLEM: ..." in
	// LastProcessingResult; not counted as an attempt.
	ClassRetryConfig
	// ClassBadBatch (B): this request can never succeed (payload too large,
	// invalid JSON, recursion). Do not resend the same bytes: bisect or count
	// a failed attempt.
	ClassBadBatch
	// ClassMapping (M): the target is gone or inaccessible. Pause the mapping
	// with long backoff.
	ClassMapping
)

func (c Class) String() string {
	switch c {
	case ClassRetry:
		return "R"
	case ClassRetryConfig:
		return "RC"
	case ClassBadBatch:
		return "B"
	case ClassMapping:
		return "M"
	}
	return "?"
}

// InvokeError is an Invoke call that did not reach the function or whose
// answer could not be read: an API error (Type is the exception name, such
// as TooManyRequestsException), a transport failure (Type is "" and
// StatusCode 0) or a client timeout (Type "ClientTimeout"). Function errors
// are not InvokeErrors; see Result.FunctionError.
type InvokeError struct {
	Type       string
	Message    string
	StatusCode int
	Class      Class
	// RetryAfter is the server's Retry-After on a 429 (0 when absent).
	RetryAfter time.Duration
	Err        error
}

func (e *InvokeError) Error() string {
	var b strings.Builder
	b.WriteString("invoke: ")
	switch {
	case e.Type != "" && e.StatusCode != 0:
		fmt.Fprintf(&b, "%s (HTTP %d)", e.Type, e.StatusCode)
	case e.Type != "":
		b.WriteString(e.Type)
	case e.StatusCode != 0:
		fmt.Fprintf(&b, "HTTP %d", e.StatusCode)
	default:
		b.WriteString("transport error")
	}
	fmt.Fprintf(&b, " [%s]", e.Class)
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	} else if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *InvokeError) Unwrap() error { return e.Err }

// Retriable reports whether the same batch may be sent again without
// counting an attempt (ClassRetry or ClassRetryConfig).
func (e *InvokeError) Retriable() bool { return e.Class == ClassRetry || e.Class == ClassRetryConfig }

// Classes of the Invoke exceptions of spec lambda-esm-api.md 10.3.
var exceptionClass = map[string]Class{
	"TooManyRequestsException":             ClassRetry,
	"ServiceException":                     ClassRetry,
	"ResourceConflictException":            ClassRetry,
	"ResourceNotReadyException":            ClassRetry,
	"EC2ThrottledException":                ClassRetry,
	"EC2UnexpectedException":               ClassRetry,
	"ENILimitReachedException":             ClassRetry,
	"SubnetIPAddressLimitReachedException": ClassRetry,
	"SnapStartNotReadyException":           ClassRetry,
	"SnapStartTimeoutException":            ClassRetry,
	"EFSMountConnectivityException":        ClassRetry,
	"EFSMountTimeoutException":             ClassRetry,
	"EFSIOException":                       ClassRetry,
	"S3FilesMountConnectivityException":    ClassRetry,
	"S3FilesMountTimeoutException":         ClassRetry,

	"EC2AccessDeniedException":                 ClassRetryConfig,
	"InvalidSubnetIDException":                 ClassRetryConfig,
	"InvalidSecurityGroupIDException":          ClassRetryConfig,
	"KMSAccessDeniedException":                 ClassRetryConfig,
	"KMSDisabledException":                     ClassRetryConfig,
	"KMSInvalidStateException":                 ClassRetryConfig,
	"KMSNotFoundException":                     ClassRetryConfig,
	"InvalidRuntimeException":                  ClassRetryConfig,
	"InvalidZipFileException":                  ClassRetryConfig,
	"EFSMountFailureException":                 ClassRetryConfig,
	"S3FilesMountFailureException":             ClassRetryConfig,
	"SnapStartException":                       ClassRetryConfig,
	"NoPublishedVersionException":              ClassRetryConfig,
	"ResourceNotFoundException":                ClassMapping,
	"AccessDeniedException":                    ClassMapping,
	"AccessDeniedExceptionException":           ClassMapping,
	"ValidationException":                      ClassMapping,
	"UnrecognizedClientException":              ClassMapping,
	"InvalidSignatureException":                ClassMapping,
	"RequestTooLargeException":                 ClassBadBatch,
	"RequestEntityTooLargeException":           ClassBadBatch,
	"SerializedRequestEntityTooLargeException": ClassBadBatch,
	"InvalidRequestContentException":           ClassBadBatch,
	"UnsupportedMediaTypeException":            ClassBadBatch,
	"RecursiveInvocationException":             ClassBadBatch,
	// RIE in multi-concurrency mode when all runtimes are busy.
	"Runtime.Unavailable": ClassRetry,
}

// Classify returns the class of an Invoke error by exception name, falling
// back on the HTTP status for names the table does not know.
// InvalidParameterValueException is ClassMapping when the message is about
// the target (qualifier, function) and ClassBadBatch otherwise.
func Classify(typ, message string, status int) Class {
	if typ == "InvalidParameterValueException" {
		m := strings.ToLower(message)
		if strings.Contains(m, "qualifier") || strings.Contains(m, "function") {
			return ClassMapping
		}
		return ClassBadBatch
	}
	if c, ok := exceptionClass[typ]; ok {
		return c
	}
	switch {
	case status == 0, status == http.StatusTooManyRequests, status >= 500,
		status == http.StatusRequestTimeout, status == http.StatusConflict, status == http.StatusGone:
		return ClassRetry
	case status == http.StatusRequestEntityTooLarge, status == http.StatusUnsupportedMediaType:
		return ClassBadBatch
	case status == http.StatusNotFound, status == http.StatusForbidden, status == http.StatusUnauthorized:
		return ClassMapping
	}
	return ClassBadBatch
}

// parseRetryAfter reads a Retry-After header: delay seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// ErrInvalidBatchResponse is returned (wrapped) by the response parsers when
// a partial batch response fails the whole batch: a malformed item, a
// missing, empty or unknown item identifier, or a body that is not JSON.
var ErrInvalidBatchResponse = errors.New("invalid batch item failures response")

// ErrMissingState is returned by ParseWindowResponse when a tumbling-window
// invocation answered without a "state" object; the invocation counts as
// failed.
var ErrMissingState = errors.New("tumbling window response has no state")
