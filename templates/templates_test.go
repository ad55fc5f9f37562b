package templates

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/esmd/esmd/api"
	"github.com/esmd/esmd/esm"
)

// decode decodes CreateEventSourceMapping bodies with the API's own
// decoder, as esmd run does.
func decode(t *testing.T, bodies []json.RawMessage) []*esm.Config {
	t.Helper()
	out := make([]*esm.Config, len(bodies))
	for i, b := range bodies {
		var c esm.Config
		if err := api.DecodeBody(b, &c); err != nil {
			t.Fatalf("mapping %d: %v\n%s", i+1, err, b)
		}
		out[i] = &c
	}
	return out
}

// TestRoundTrip reads each template of testdata and checks that it yields
// the mappings of the create-event-source-mapping inputs beside it
// (NAME.mappings.json), and that the other events are reported ignored.
func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		file    string
		format  Format
		opts    Options
		ignored []string
	}{
		{
			file:   "sam-orders.yaml",
			format: SAM,
			opts: Options{Resources: map[string]string{
				"OrdersTable.StreamArn": "arn:aws:dynamodb:us-east-1:000000000000:table/orders-dev/stream/2026-01-01T00:00:00.000"}},
			ignored: []string{"ProcessOrdersFunction.Events.GetOrder (Api)", "AuditFunction.Events.Nightly (Schedule)",
				"ProdOnlyFunction (condition IsProd is false)"},
		},
		{
			file:   "sam-streaming.json",
			format: SAM,
			opts: Options{Region: "eu-west-1", Account: "123456789012",
				Imports: map[string]string{"shared-kafka-secret": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:shared"}},
			ignored: []string{"ClicksFunction.Events.Health (HttpApi)"},
		},
		{
			file:    "cloudformation.yaml",
			format:  CloudFormation,
			opts:    Options{Parameters: map[string]string{"PaymentsQueueName": "payments.fifo"}},
			ignored: []string{"ReplicaMapping (condition CreateReplica is false)"},
		},
		{
			file:   "serverless.yml",
			format: Serverless,
			opts: Options{Region: "eu-central-1", Account: "111122223333", Stage: "test",
				LookupEnv: func(k string) (string, bool) {
					if k == "INVENTORY_TABLE_STREAM" {
						return "arn:aws:dynamodb:eu-central-1:111122223333:table/inventory-test/stream/2026-02-03T04:05:06.789", true
					}
					return "", false
				}},
			ignored: []string{"restock.events[2] (http)", "stockLevels.events[2] (schedule)"},
		},
	} {
		t.Run(tc.file, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			tmpl, err := Parse(tc.file, src, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if tmpl.Format != tc.format {
				t.Errorf("format %q, want %q", tmpl.Format, tc.format)
			}
			if diff := cmp.Diff(tc.ignored, tmpl.Ignored); diff != "" {
				t.Errorf("ignored (-want +got):\n%s", diff)
			}
			var got []json.RawMessage
			for _, m := range tmpl.Mappings {
				got = append(got, m.Request)
			}
			wantSrc, err := os.ReadFile(filepath.Join("testdata", strings.TrimSuffix(tc.file, filepath.Ext(tc.file))+".mappings.json"))
			if err != nil {
				t.Fatal(err)
			}
			var want struct{ EventSourceMappings []json.RawMessage }
			if err := json.Unmarshal(wantSrc, &want.EventSourceMappings); err != nil {
				if err := json.Unmarshal(wantSrc, &want); err != nil {
					t.Fatal(err)
				}
			}
			if diff := cmp.Diff(decode(t, want.EventSourceMappings), decode(t, got)); diff != "" {
				for _, m := range tmpl.Mappings {
					t.Logf("%s\n%s", m.Origin, m.Request)
				}
				t.Errorf("mappings (-want +got):\n%s", diff)
			}
		})
	}
}

var _ = errors.Is
