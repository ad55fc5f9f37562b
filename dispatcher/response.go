package dispatcher

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// ParseBatchResponse reads a partial batch response,
// {"batchItemFailures":[{"itemIdentifier":"<id>"},...]}, for SQS, Kinesis
// and DynamoDB Streams. identifiers are the item identifiers of the invoked
// batch (SQS messageId, Kinesis sequenceNumber, DynamoDB SequenceNumber).
//
// It returns the failed identifiers in response order without duplicates,
// nil for complete success, or an error wrapping ErrInvalidBatchResponse
// when the whole batch must be treated as failed.
//
// Complete success (recorded on AWS): an empty body, "", [], null, {},
// {"batchItemFailures":[]}, {"batchItemFailures":null}; also any other
// valid JSON that is not an object, and an object without
// batchItemFailures (esmd's reading: AWS treats "" and [] as success, so a
// response it cannot read a failure list from is one with no failures).
//
// Whole batch failed (recorded on AWS): an item without itemIdentifier, with
// a null or empty itemIdentifier, or with an unknown key such as
// {"foo":"notvalid"}; an identifier that is not in the batch (documented for
// SQS; esmd applies it to streams too, spec STR-26). Also: a body that is not
// valid JSON, a batchItemFailures that is not an array, an item that is not
// an object, and an itemIdentifier that is not a string.
func ParseBatchResponse(body []byte, identifiers []string) (failed []string, err error) {
	items, err := batchItems(body)
	if err != nil || len(items) == 0 {
		return nil, err
	}
	var set map[string]struct{}
	if len(identifiers) > 16 {
		set = make(map[string]struct{}, len(identifiers))
		for _, id := range identifiers {
			set[id] = struct{}{}
		}
	}
	inBatch := func(id string) bool {
		if set != nil {
			_, ok := set[id]
			return ok
		}
		for _, x := range identifiers {
			if x == id {
				return true
			}
		}
		return false
	}
	seen := make(map[string]struct{}, len(items))
	for i, raw := range items {
		itemID, err := field(raw, "itemIdentifier")
		if err != nil {
			return nil, fmt.Errorf("%w: item %d: %v", ErrInvalidBatchResponse, i, err)
		}
		if isNull(itemID) {
			return nil, fmt.Errorf("%w: item %d has no itemIdentifier", ErrInvalidBatchResponse, i)
		}
		var id string
		if err := json.Unmarshal(itemID, &id); err != nil {
			return nil, fmt.Errorf("%w: item %d: itemIdentifier is not a string", ErrInvalidBatchResponse, i)
		}
		if id == "" {
			return nil, fmt.Errorf("%w: item %d has an empty itemIdentifier", ErrInvalidBatchResponse, i)
		}
		if !inBatch(id) {
			return nil, fmt.Errorf("%w: itemIdentifier %q is not in the batch", ErrInvalidBatchResponse, id)
		}
		if _, dup := seen[id]; dup {
			continue
		}
		seen[id] = struct{}{}
		failed = append(failed, id)
	}
	return failed, nil
}

// BatchItemIdentifiers returns the itemIdentifier of each entry of a
// partial batch response's batchItemFailures, as raw JSON, for a source
// whose identifiers are not strings (Kafka's {"partition","offset"}). The
// success forms give none; an entry without itemIdentifier (or with an
// unknown key), a body that is not JSON and a batchItemFailures that is not
// an array give an error wrapping ErrInvalidBatchResponse, as in
// ParseBatchResponse. A null itemIdentifier is returned as is, for the
// caller to refuse.
func BatchItemIdentifiers(body []byte) ([]json.RawMessage, error) {
	items, err := batchItems(body)
	if err != nil || len(items) == 0 {
		return nil, err
	}
	out := make([]json.RawMessage, len(items))
	for i, raw := range items {
		itemID, err := field(raw, "itemIdentifier")
		if err != nil {
			return nil, fmt.Errorf("%w: item %d: %v", ErrInvalidBatchResponse, i, err)
		}
		out[i] = itemID
	}
	return out, nil
}

// ParseWindowResponse reads the answer to a tumbling-window invocation,
// {"state":{...},"batchItemFailures":[...]}: the function must return a
// "state" object (spec STR-32); a missing, null or non-object state gives
// ErrMissingState and the invocation counts as failed. The batch item
// failures are parsed as ParseBatchResponse does.
func ParseWindowResponse(body []byte, identifiers []string) (state json.RawMessage, failed []string, err error) {
	stateRaw, ferr := field(body, "state")
	if ferr != nil {
		return nil, nil, ErrMissingState
	}
	st := bytes.TrimSpace(stateRaw)
	if len(st) == 0 || st[0] != '{' {
		return nil, nil, ErrMissingState
	}
	failed, err = ParseBatchResponse(body, identifiers)
	if err != nil {
		return nil, nil, err
	}
	return bytes.Clone(st), failed, nil
}

// batchItems returns the raw items of batchItemFailures, nil for the
// success forms.
func batchItems(body []byte) ([]json.RawMessage, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, nil
	}
	if !json.Valid(body) {
		return nil, fmt.Errorf("%w: response is not JSON", ErrInvalidBatchResponse)
	}
	if body[0] != '{' {
		return nil, nil // "", [], null, numbers: no failures
	}
	bif, err := field(body, "batchItemFailures")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidBatchResponse, err)
	}
	if isNull(bif) {
		return nil, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(bif, &items); err != nil {
		return nil, fmt.Errorf("%w: batchItemFailures is not an array", ErrInvalidBatchResponse)
	}
	return items, nil
}

func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

// field returns the value of key in the JSON object raw (nil when absent).
// Keys match case-sensitively, as in AWS's (Java) parser; encoding/json's
// struct decoding would also accept "BatchItemFailures".
func field(raw json.RawMessage, key string) (json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, fmt.Errorf("not an object")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	return m[key], nil
}
