package dispatcher

import (
	"slices"
	"testing"
)

func FuzzParseBatchResponse(f *testing.F) {
	for _, s := range []string{``, `""`, `[]`, `null`, `{}`, `{"batchItemFailures":[]}`, `{"batchItemFailures":null}`,
		`{"batchItemFailures":[{"itemIdentifier":"a"}]}`, `{"batchItemFailures":[{"foo":"notvalid"}]}`, `{"state":{}}`} {
		f.Add([]byte(s))
	}
	ids := []string{"a", "b", "c"}
	f.Fuzz(func(t *testing.T, body []byte) {
		failed, err := ParseBatchResponse(body, ids)
		if err != nil && failed != nil {
			t.Fatal("failures with an error")
		}
		for _, id := range failed {
			if !slices.Contains(ids, id) {
				t.Fatalf("%q is not in the batch", id)
			}
		}
		_, _, _ = ParseWindowResponse(body, ids)
		_, _ = BatchItemIdentifiers(body)
	})
}
