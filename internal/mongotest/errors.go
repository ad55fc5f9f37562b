package mongotest

import (
	"fmt"
	"slices"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// cmdError is a command failure, sent as {ok: 0, errmsg, code, codeName,
// errorLabels}.
type cmdError struct {
	code   int32
	msg    string
	labels []string
}

func (e *cmdError) Error() string { return fmt.Sprintf("(%s) %s", codeName(e.code), e.msg) }

func errorf(code int32, format string, args ...any) *cmdError {
	return &cmdError{code: code, msg: fmt.Sprintf(format, args...)}
}

// Codes used besides the exported ones (mongod's numbers and names).
const (
	codeBadValue                  = 2
	codeFailedToParse             = 9
	codeTypeMismatch              = 14
	codeNamespaceNotFound         = 26
	codePathNotViable             = 28
	codeConflictingUpdateOperator = 40
	codeImmutableField            = 66
	codeInvalidNamespace          = 73
	codeOperationFailed           = 96
	codeNotImplemented            = 238
	codeChangeStreamFatalError    = 280
	codeMechanismUnavailable      = 334
	codeUnsupportedOpQueryCommand = 352
	codeBSONObjectTooLarge        = 10334
	codeDuplicateKey              = 11000
	codeInvalidPipelineStage      = 40324
	codeMultipleResumeOptions     = 40674
)

var codeNames = map[int32]string{
	codeBadValue:                  "BadValue",
	CodeHostUnreachable:           "HostUnreachable",
	7:                             "HostNotFound",
	codeFailedToParse:             "FailedToParse",
	CodeUnauthorized:              "Unauthorized",
	codeTypeMismatch:              "TypeMismatch",
	CodeAuthenticationFailed:      "AuthenticationFailed",
	codeNamespaceNotFound:         "NamespaceNotFound",
	codePathNotViable:             "PathNotViable",
	codeConflictingUpdateOperator: "ConflictingUpdateOperators",
	CodeCursorNotFound:            "CursorNotFound",
	CodeCommandNotFound:           "CommandNotFound",
	codeImmutableField:            "ImmutableField",
	codeInvalidNamespace:          "InvalidNamespace",
	89:                            "NetworkTimeout",
	91:                            "ShutdownInProgress",
	codeOperationFailed:           "OperationFailed",
	189:                           "PrimarySteppedDown",
	codeNotImplemented:            "NotImplemented",
	CodeInvalidResumeToken:        "InvalidResumeToken",
	262:                           "ExceededTimeLimit",
	codeChangeStreamFatalError:    "ChangeStreamFatalError",
	CodeChangeStreamHistoryLost:   "ChangeStreamHistoryLost",
	codeMechanismUnavailable:      "MechanismUnavailable",
	codeUnsupportedOpQueryCommand: "UnsupportedOpQueryCommand",
	9001:                          "SocketException",
	codeBSONObjectTooLarge:        "BSONObjectTooLarge",
	10107:                         "NotWritablePrimary",
	codeDuplicateKey:              "DuplicateKey",
	11600:                         "InterruptedAtShutdown",
	11602:                         "InterruptedDueToReplStateChange",
	13435:                         "NotPrimaryNoSecondaryOk",
	13436:                         "NotPrimaryOrSecondary",
}

func codeName(code int32) string {
	if n, ok := codeNames[code]; ok {
		return n
	}
	return fmt.Sprintf("Location%d", code)
}

// resumableCodes are the errors mongod labels ResumableChangeStreamError
// on a change stream getMore (and the driver's list for old servers).
var resumableCodes = []int32{6, 7, 63, 89, 91, 133, 150, 189, 234, 262, 9001, 10107, 11600, 11602, 13388, 13435, 13436}

// retryableWriteCodes are the errors mongod labels RetryableWriteError on
// a retryable write.
var retryableWriteCodes = []int32{6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436}

func isResumable(code int32) bool      { return slices.Contains(resumableCodes, code) }
func isRetryableWrite(code int32) bool { return slices.Contains(retryableWriteCodes, code) }

func errorDoc(e *cmdError) bson.D {
	d := bson.D{
		{Key: "ok", Value: 0.0},
		{Key: "errmsg", Value: e.msg},
		{Key: "code", Value: e.code},
		{Key: "codeName", Value: codeName(e.code)},
	}
	if len(e.labels) > 0 {
		d = append(d, bson.E{Key: "errorLabels", Value: e.labels})
	}
	return d
}
