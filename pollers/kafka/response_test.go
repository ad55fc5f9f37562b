package kafka

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/esmd/esmd/dispatcher"
)

func TestParseBatchResponse(t *testing.T) {
	in := func(k Item) bool { return k.Partition == "my-topic-0" && k.Offset >= 100 && k.Offset < 110 }
	tests := []struct {
		name    string
		body    string
		want    []Item
		invalid bool
	}{
		{name: "empty", body: ``},
		{name: "null", body: `null`},
		{name: "empty object", body: `{}`},
		{name: "empty list", body: `{"batchItemFailures":[]}`},
		{name: "one", body: `{"batchItemFailures":[{"itemIdentifier":{"partition":"my-topic-0","offset":100}}]}`,
			want: []Item{{"my-topic-0", 100}}},
		{name: "not in batch", body: `{"batchItemFailures":[{"itemIdentifier":{"partition":"my-topic-1","offset":100}}]}`, invalid: true},
		{name: "offset not in batch", body: `{"batchItemFailures":[{"itemIdentifier":{"partition":"my-topic-0","offset":99}}]}`, invalid: true},
		{name: "string identifier", body: `{"batchItemFailures":[{"itemIdentifier":"100"}]}`, invalid: true},
		{name: "string offset", body: `{"batchItemFailures":[{"itemIdentifier":{"partition":"my-topic-0","offset":"100"}}]}`, invalid: true},
		{name: "missing offset", body: `{"batchItemFailures":[{"itemIdentifier":{"partition":"my-topic-0"}}]}`, invalid: true},
		{name: "null", body: `{"batchItemFailures":[{"itemIdentifier":null}]}`, invalid: true},
		{name: "keys are case-sensitive", body: `{"batchItemFailures":[{"itemIdentifier":{"Partition":"my-topic-0","offset":100}}]}`, invalid: true},
		{name: "bad key", body: `{"batchItemFailures":[{"foo":"notvalid"}]}`, invalid: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseBatchResponse([]byte(tc.body), in)
			if tc.invalid {
				if !errors.Is(err, dispatcher.ErrInvalidBatchResponse) {
					t.Fatalf("got %v, %v; want dispatcher.ErrInvalidBatchResponse", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

func FuzzParseBatchResponse(f *testing.F) {
	f.Add([]byte(`{"batchItemFailures":[{"itemIdentifier":{"partition":"t-0","offset":1}}]}`))
	f.Add([]byte(`{"batchItemFailures":[{"itemIdentifier":{"partition":"t-0","offset":"1"}}]}`))
	f.Add([]byte(`{"batchItemFailures":null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		failed, err := ParseBatchResponse(body, func(Item) bool { return true })
		if err != nil && failed != nil {
			t.Fatal("failures with an error")
		}
		if err != nil && !errors.Is(err, dispatcher.ErrInvalidBatchResponse) {
			t.Fatalf("error %v does not wrap ErrInvalidBatchResponse", err)
		}
	})
}
