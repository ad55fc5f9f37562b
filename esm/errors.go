package esm

import (
	"fmt"
	"net/http"
	"strings"
)

// Exception names used in X-Amzn-ErrorType, as the Lambda service spells them.
const (
	ErrTypeInvalidParameterValue = "InvalidParameterValueException"
	ErrTypeResourceNotFound      = "ResourceNotFoundException"
	ErrTypeResourceConflict      = "ResourceConflictException"
	ErrTypeResourceInUse         = "ResourceInUseException"
	ErrTypeValidation            = "ValidationException"
	ErrTypeService               = "ServiceException"
	ErrTypeInvalidRequestContent = "InvalidRequestContentException"
	ErrTypeRequestTooLarge       = "RequestTooLargeException"
	ErrTypeTooManyRequests       = "TooManyRequestsException"
	ErrTypeUnsupportedMediaType  = "UnsupportedMediaTypeException"
)

// Error is an error the Lambda API reports to its caller. Every failure the
// engine returns for a client request is an *Error; anything else is an
// internal fault that the API layer reports as a ServiceException.
type Error struct {
	// Type is the exception name (X-Amzn-ErrorType), e.g. ResourceNotFoundException.
	Type string
	// Status is the HTTP status code.
	Status int
	// Message is the human-readable message, byte-exact with AWS where recorded.
	Message string

	// existing is the UUID of the mapping a ResourceConflictException
	// collided with.
	existing string
}

func (e *Error) Error() string { return e.Type + ": " + e.Message }

// Fault reports "User" or "Service", the body member AWS sends as "Type".
// ValidationException bodies carry no Type; Fault returns "" for them.
func (e *Error) Fault() string {
	switch {
	case e.Type == ErrTypeValidation:
		return ""
	case e.Status >= 500:
		return "Service"
	default:
		return "User"
	}
}

// MessageKey is the JSON key AWS uses for the message of this exception:
// "message" for some exceptions and "Message" for others (spec 1.1).
func (e *Error) MessageKey() string {
	switch e.Type {
	case ErrTypeResourceNotFound, ErrTypeResourceInUse, ErrTypeService:
		return "Message"
	}
	return "message"
}

// serviceError is the 500 ServiceException Lambda answers for a fault of
// its own, with its own message. The detail (an endpoint that did not
// answer, a store error) goes to esmd's log, never to the caller.
func serviceError() *Error { return ServiceError() }

// ServiceError is the 500 ServiceException for a fault of esmd's own,
// with Lambda's fixed message: what an API answers for an error that is
// not an *Error, whose text (a file, an address) is for the log only.
func ServiceError() *Error {
	return &Error{Type: ErrTypeService, Status: http.StatusInternalServerError,
		Message: "An error occurred and the request cannot be processed."}
}

func invalidParam(format string, args ...any) *Error {
	return &Error{Type: ErrTypeInvalidParameterValue, Status: http.StatusBadRequest, Message: fmt.Sprintf(format, args...)}
}

// NotFound is the 404 AWS returns for an unknown mapping UUID.
func NotFound() *Error {
	return &Error{Type: ErrTypeResourceNotFound, Status: http.StatusNotFound, Message: "The resource you requested does not exist."}
}

func conflict(format string, args ...any) *Error {
	return &Error{Type: ErrTypeResourceConflict, Status: http.StatusConflict, Message: fmt.Sprintf(format, args...)}
}

func inUse(format string, args ...any) *Error {
	return &Error{Type: ErrTypeResourceInUse, Status: http.StatusBadRequest, Message: fmt.Sprintf(format, args...)}
}

// InvalidRequestContent is returned for a body that is not a JSON object of
// the request shape.
func InvalidRequestContent(detail string) *Error {
	return &Error{Type: ErrTypeInvalidRequestContent, Status: http.StatusBadRequest,
		Message: "Could not parse request body into json: " + detail}
}

// violations collects front-end constraint violations and renders them the
// way the AWS front end does:
//
//	1 validation error detected: Value '5' at 'batchSize' failed to satisfy constraint: Member must ...
//	2 validation errors detected: Value ...; Value ...
type violations []string

// add records one violation. value is the already formatted value (see
// quote); path is the lowerCamelCase member path.
func (v *violations) add(value, path, constraint string) {
	*v = append(*v, fmt.Sprintf("Value %s at '%s' failed to satisfy constraint: %s", value, path, constraint))
}

func (v violations) err() *Error {
	if len(v) == 0 {
		return nil
	}
	noun := "errors"
	if len(v) == 1 {
		noun = "error"
	}
	return &Error{Type: ErrTypeValidation, Status: http.StatusBadRequest,
		Message: fmt.Sprintf("%d validation %s detected: %s", len(v), noun, strings.Join(v, "; "))}
}

// quote formats a value as the AWS front end prints it in a violation:
// strings and numbers in single quotes, lists as '[a, b]'.
func quote(v any) string {
	switch x := v.(type) {
	case []string:
		return "'[" + strings.Join(x, ", ") + "]'"
	default:
		return fmt.Sprintf("'%v'", x)
	}
}
