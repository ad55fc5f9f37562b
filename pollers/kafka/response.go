package kafka

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/esmd/esmd/dispatcher"
)

// Item identifies one Kafka record in a partial batch response:
// Partition is the "<topic>-<partition>" key of the event's records map.
type Item struct {
	Partition string
	Offset    int64
}

// ParseBatchResponse reads a Kafka partial batch response,
// {"batchItemFailures":[{"itemIdentifier":{"partition":"my-topic-0","offset":100}}]}
// (spec KAF-13). inBatch reports whether a record is in the invoked event.
// Success and failure forms are those of dispatcher.ParseBatchResponse; an
// item whose partition or offset is missing, of the wrong type, or not in
// the batch fails the whole batch (dispatcher.ErrInvalidBatchResponse).
func ParseBatchResponse(body []byte, inBatch func(Item) bool) (failed []Item, err error) {
	ids, err := dispatcher.BatchItemIdentifiers(body)
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	for i, raw := range ids {
		// Keys match case-sensitively, as in AWS's parser (encoding/json's
		// struct decoding would also accept "Partition").
		var id map[string]json.RawMessage
		var part string
		raw = bytes.TrimSpace(raw)
		ok := len(raw) > 0 && raw[0] == '{' && json.Unmarshal(raw, &id) == nil &&
			json.Unmarshal(id["partition"], &part) == nil && part != "" && isNumber(id["offset"])
		if !ok {
			return nil, fmt.Errorf("%w: item %d: itemIdentifier must be {\"partition\":\"<topic>-<n>\",\"offset\":<n>}", dispatcher.ErrInvalidBatchResponse, i)
		}
		offset, err := strconv.ParseInt(string(bytes.TrimSpace(id["offset"])), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: item %d: offset %s", dispatcher.ErrInvalidBatchResponse, i, id["offset"])
		}
		k := Item{Partition: part, Offset: offset}
		if !inBatch(k) {
			return nil, fmt.Errorf("%w: %s offset %d is not in the batch", dispatcher.ErrInvalidBatchResponse, k.Partition, k.Offset)
		}
		failed = append(failed, k)
	}
	return failed, nil
}

// isNumber reports whether raw is a JSON number (not a string).
func isNumber(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && (raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9')
}
