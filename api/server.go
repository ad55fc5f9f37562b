package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/esmd/esmd/esm"
	"github.com/google/uuid"
)

// MaxBodyBytes is the largest request body accepted; larger ones get 413
// RequestTooLargeException.
const MaxBodyBytes = 1 << 20

// Engine is what the API needs from esm.Engine.
type Engine interface {
	Create(ctx context.Context, cfg *esm.Config) (*esm.Mapping, error)
	Get(ctx context.Context, id string) (*esm.Mapping, error)
	List(ctx context.Context, in esm.ListInput) ([]*esm.Mapping, string, error)
	Update(ctx context.Context, id string, cfg *esm.Config) (*esm.Mapping, error)
	Delete(ctx context.Context, id string) (*esm.Mapping, error)
	TagResource(ctx context.Context, arn string, tags map[string]string) error
	UntagResource(ctx context.Context, arn string, keys []string) error
	ListTags(ctx context.Context, arn string) (map[string]string, error)
}

// Handler serves the Lambda ESM REST API.
type Handler struct {
	engine Engine
	log    *slog.Logger
}

// New returns the API handler for an engine. A nil logger discards.
func New(e Engine, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Handler{engine: e, log: log}
}

const (
	esmPrefix  = "/2015-03-31/event-source-mappings"
	tagsPrefix = "/2017-03-31/tags/"
)

// ServeHTTP routes one request. r.URL.Path is already percent-decoded, so
// %3A and %24 in path segments arrive as ':' and '$'.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rid := uuid.NewString()
	w.Header().Set("x-amzn-RequestId", rid)
	defer func() {
		if p := recover(); p != nil {
			h.log.Error("panic serving request", "method", r.Method, "path", r.URL.Path, "panic", p)
			writeError(w, &esm.Error{Type: esm.ErrTypeService, Status: http.StatusInternalServerError, Message: "internal error"})
		}
	}()
	path := r.URL.Path
	if err := checkParams(r); err != nil {
		writeError(w, err)
		return
	}
	switch {
	case path == esmPrefix || path == esmPrefix+"/":
		switch r.Method {
		case http.MethodPost:
			h.create(w, r)
			return
		case http.MethodGet:
			h.list(w, r)
			return
		}
	case strings.HasPrefix(path, esmPrefix+"/") && !strings.Contains(path[len(esmPrefix)+1:], "/"):
		id := path[len(esmPrefix)+1:]
		switch r.Method {
		case http.MethodGet:
			h.mapping(w, http.StatusOK)(h.engine.Get(r.Context(), id))
			return
		case http.MethodPut:
			var cfg esm.Config
			if err := decode(w, r, &cfg); err != nil {
				writeError(w, err)
				return
			}
			h.mapping(w, http.StatusAccepted)(h.engine.Update(r.Context(), id, &cfg))
			return
		case http.MethodDelete:
			h.mapping(w, http.StatusAccepted)(h.engine.Delete(r.Context(), id))
			return
		}
	case strings.HasPrefix(path, tagsPrefix) && len(path) > len(tagsPrefix):
		arn := path[len(tagsPrefix):]
		switch r.Method {
		case http.MethodGet:
			tags, err := h.engine.ListTags(r.Context(), arn)
			h.respond(w, http.StatusOK, struct {
				Tags map[string]string `json:"Tags"`
			}{tags}, err)
			return
		case http.MethodPost:
			var in struct {
				Tags map[string]string `json:"Tags"`
			}
			if err := decode(w, r, &in); err != nil {
				writeError(w, err)
				return
			}
			h.respond(w, http.StatusNoContent, nil, h.engine.TagResource(r.Context(), arn, in.Tags))
			return
		case http.MethodDelete:
			keys := r.URL.Query()["tagKeys"]
			h.respond(w, http.StatusNoContent, nil, h.engine.UntagResource(r.Context(), arn, keys))
			return
		}
	}
	writeError(w, &esm.Error{Type: "UnknownOperationException", Status: http.StatusNotFound,
		Message: fmt.Sprintf("Unknown operation %s %s", r.Method, path)})
}

func (h *Handler) create(w http.ResponseWriter, r *http.Request) {
	var cfg esm.Config
	if err := decode(w, r, &cfg); err != nil {
		writeError(w, err)
		return
	}
	h.mapping(w, http.StatusAccepted)(h.engine.Create(r.Context(), &cfg))
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var in esm.ListInput
	if v, ok := q["EventSourceArn"]; ok {
		in.EventSourceArn = &v[0]
	}
	if v, ok := q["FunctionName"]; ok {
		in.FunctionName = &v[0]
	}
	if v, ok := q["Marker"]; ok {
		in.Marker = &v[0]
	}
	if v, ok := q["MaxItems"]; ok {
		n, err := strconv.ParseInt(v[0], 10, 64)
		if err != nil {
			writeError(w, &esm.Error{Type: esm.ErrTypeInvalidParameterValue, Status: http.StatusBadRequest,
				Message: fmt.Sprintf("Invalid MaxItems: %s", v[0])})
			return
		}
		in.MaxItems = &n
	}
	ms, next, err := h.engine.List(r.Context(), in)
	if err != nil {
		writeError(w, err)
		return
	}
	out := listOutput{EventSourceMappings: make([]esm.Configuration, len(ms)), NextMarker: next}
	for i, m := range ms {
		out.EventSourceMappings[i] = m.Configuration()
	}
	h.respond(w, http.StatusOK, out, nil)
}

type listOutput struct {
	EventSourceMappings []esm.Configuration `json:"EventSourceMappings"`
	NextMarker          string              `json:"NextMarker,omitempty"`
}

// mapping returns a function that writes an engine result as a mapping
// response with the given success status.
func (h *Handler) mapping(w http.ResponseWriter, status int) func(*esm.Mapping, error) {
	return func(m *esm.Mapping, err error) {
		if err != nil {
			h.respond(w, status, nil, err)
			return
		}
		h.respond(w, status, m.Configuration(), nil)
	}
}

func (h *Handler) respond(w http.ResponseWriter, status int, body any, err error) {
	if err != nil {
		var ae *esm.Error
		if !errors.As(err, &ae) {
			h.log.Error("request failed", "err", err)
		}
		writeError(w, err)
		return
	}
	if body == nil {
		w.WriteHeader(status)
		return
	}
	data, merr := json.Marshal(body)
	if merr != nil {
		writeError(w, merr)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(status)
	w.Write(data)
}

// decode reads a JSON object body into v. Unknown members are ignored, as
// AWS ignores them.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		return bodyError(err)
	}
	return DecodeBody(body, v)
}

// bodyError is the API error for a failed body read.
func bodyError(err error) error {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return tooLarge()
	}
	return esm.InvalidRequestContent(err.Error())
}

func tooLarge() *esm.Error {
	return &esm.Error{Type: esm.ErrTypeRequestTooLarge, Status: http.StatusRequestEntityTooLarge,
		Message: fmt.Sprintf("Request must be smaller than %d bytes for the operation", MaxBodyBytes)}
}

// DecodeBody parses a request body into v with the API's rules: an empty
// body is an empty object; anything but a JSON object of the right member
// types is InvalidRequestContentException.
func DecodeBody(body []byte, v any) error {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil
	}
	if body[0] != '{' {
		return esm.InvalidRequestContent("the request body must be a JSON object")
	}
	if msg := invalidText(body); msg != "" {
		return esm.InvalidRequestContent(msg)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return esm.InvalidRequestContent(describe(err))
	}
	if dec.More() {
		return esm.InvalidRequestContent("unexpected data after the JSON object")
	}
	return nil
}

func describe(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("value %s is not valid for member %s (expected %s)", te.Value, te.Field, te.Type)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s at offset %d", se.Error(), se.Offset)
	}
	return err.Error()
}

// frontEnd are the exceptions of AWS's front end (authentication, access),
// whose bodies carry only a message.
var frontEnd = map[string]bool{ErrTypeMissingToken: true, ErrTypeIncompleteSignature: true,
	ErrTypeInvalidSignature: true, ErrTypeUnrecognizedClient: true, ErrTypeAccessDenied: true}

// WriteError renders an error in the REST-JSON shape Lambda uses, for
// esmd's own endpoints beside the API; an error that is not an *esm.Error
// is shown as esm.ServiceError, and the caller logs it.
func WriteError(w http.ResponseWriter, err error) { writeError(w, err) }

// writeError renders an error in the REST-JSON shape Lambda uses. An
// error that is not an *esm.Error is esmd's own fault: its text may name a
// file or an address, so the answer is esm.ServiceError's fixed message
// and the caller logs the error.
func writeError(w http.ResponseWriter, err error) {
	var ae *esm.Error
	if !errors.As(err, &ae) {
		ae = esm.ServiceError()
	}
	body := map[string]string{ae.MessageKey(): ae.Message}
	if f := ae.Fault(); f != "" && !frontEnd[ae.Type] {
		body["Type"] = f
	}
	data, _ := json.Marshal(body)
	h := w.Header()
	h.Set("X-Amzn-ErrorType", ae.Type)
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(ae.Status)
	w.Write(data)
}
