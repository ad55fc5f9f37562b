package dispatcher

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseBatchResponse(t *testing.T) {
	ids := []string{"s1", "s2", "s3"}
	tests := []struct {
		name    string
		body    string
		want    []string
		invalid bool
	}{
		// Success forms recorded on AWS (test_*_report_batch_item_success_scenarios).
		{name: "empty body", body: ""},
		{name: "empty_string", body: `""`},
		{name: "empty_list", body: `[]`},
		{name: "null", body: `null`},
		{name: "empty_dict", body: `{}`},
		{name: "empty_batch_item_failure", body: `{"batchItemFailures":[]}`},
		{name: "null_batch_item_failure", body: `{"batchItemFailures":null}`},
		{name: "whitespace", body: " \n"},
		{name: "other object", body: `{"statusCode":200}`},
		{name: "number", body: `42`},
		// Partial failures.
		{name: "one", body: `{"batchItemFailures":[{"itemIdentifier":"s2"}]}`, want: []string{"s2"}},
		{name: "several, duplicate", body: `{"batchItemFailures":[{"itemIdentifier":"s3"},{"itemIdentifier":"s2"},{"itemIdentifier":"s3"}]}`, want: []string{"s3", "s2"}},
		{name: "extra key", body: `{"batchItemFailures":[{"itemIdentifier":"s1","reason":"x"}]}`, want: []string{"s1"}},
		// Whole-batch failure forms recorded on AWS (test_*_report_batch_item_failure_scenarios).
		{name: "item_identifier_not_present", body: `{"batchItemFailures":[{"itemIdentifier":"nope"}]}`, invalid: true},
		{name: "empty_string item", body: `{"batchItemFailures":[{"itemIdentifier":""}]}`, invalid: true},
		{name: "null item", body: `{"batchItemFailures":[{"itemIdentifier":null}]}`, invalid: true},
		{name: "invalid_key_foo", body: `{"batchItemFailures":[{"foo":"notvalid"}]}`, invalid: true},
		{name: "invalid_key_foo_null_value", body: `{"batchItemFailures":[{"foo":null}]}`, invalid: true},
		// esmd's choices for other malformed answers.
		{name: "case-sensitive key", body: `{"batchItemFailures":[{"ItemIdentifier":"s1"}]}`, invalid: true},
		{name: "not JSON", body: `batch failed`, invalid: true},
		{name: "not an array", body: `{"batchItemFailures":"s1"}`, invalid: true},
		{name: "item not object", body: `{"batchItemFailures":["s1"]}`, invalid: true},
		{name: "null item entry", body: `{"batchItemFailures":[null]}`, invalid: true},
		{name: "numeric identifier", body: `{"batchItemFailures":[{"itemIdentifier":1}]}`, invalid: true},
		{name: "one good one bad", body: `{"batchItemFailures":[{"itemIdentifier":"s1"},{"itemIdentifier":""}]}`, invalid: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseBatchResponse([]byte(tc.body), ids)
			if tc.invalid {
				if !errors.Is(err, ErrInvalidBatchResponse) {
					t.Fatalf("got %v, %v; want ErrInvalidBatchResponse", got, err)
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

func TestParseBatchResponseManyIDs(t *testing.T) {
	var ids []string
	for i := range 100 {
		ids = append(ids, string(rune('a'+i%26))+string(rune('a'+i/26)))
	}
	got, err := ParseBatchResponse([]byte(`{"batchItemFailures":[{"itemIdentifier":"zc"}]}`), ids)
	if err != nil || len(got) != 1 {
		t.Fatal(got, err)
	}
	if _, err := ParseBatchResponse([]byte(`{"batchItemFailures":[{"itemIdentifier":"zz"}]}`), ids); !errors.Is(err, ErrInvalidBatchResponse) {
		t.Fatal(err)
	}
}

func TestParseWindowResponse(t *testing.T) {
	ids := []string{"s1", "s2"}
	tests := []struct {
		name      string
		body      string
		state     string
		failed    []string
		wantError error
	}{
		{name: "state", body: `{"state":{"count":3}}`, state: `{"count":3}`},
		{name: "empty state", body: `{"state":{}}`, state: `{}`},
		{name: "state and failures", body: `{"state":{"a":1},"batchItemFailures":[{"itemIdentifier":"s2"}]}`, state: `{"a":1}`, failed: []string{"s2"}},
		{name: "no state", body: `{}`, wantError: ErrMissingState},
		{name: "null state", body: `{"state":null}`, wantError: ErrMissingState},
		{name: "string state", body: `{"state":"x"}`, wantError: ErrMissingState},
		{name: "empty body", body: ``, wantError: ErrMissingState},
		{name: "null body", body: `null`, wantError: ErrMissingState},
		{name: "bad failures", body: `{"state":{},"batchItemFailures":[{"itemIdentifier":""}]}`, wantError: ErrInvalidBatchResponse},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, failed, err := ParseWindowResponse([]byte(tc.body), ids)
			if tc.wantError != nil {
				if !errors.Is(err, tc.wantError) {
					t.Fatalf("err = %v, want %v", err, tc.wantError)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(st) != tc.state {
				t.Errorf("state %s, want %s", st, tc.state)
			}
			if diff := cmp.Diff(tc.failed, failed); diff != "" {
				t.Errorf("failed (-want +got)\n%s", diff)
			}
		})
	}
}

func TestSplitFunction(t *testing.T) {
	tests := []struct{ in, name, qual string }{
		{"arn:aws:lambda:us-east-1:123456789012:function:fn", "arn:aws:lambda:us-east-1:123456789012:function:fn", ""},
		{"arn:aws:lambda:us-east-1:123456789012:function:fn:PROD", "arn:aws:lambda:us-east-1:123456789012:function:fn", "PROD"},
		{"arn:aws:lambda:us-east-1:123456789012:function:fn:$LATEST", "arn:aws:lambda:us-east-1:123456789012:function:fn", "$LATEST"},
		{"123456789012:function:fn:3", "123456789012:function:fn", "3"},
		{"123456789012:function:fn", "123456789012:function:fn", ""},
		{"fn:PROD", "fn", "PROD"},
		{"fn", "fn", ""},
	}
	for _, tc := range tests {
		n, q := SplitFunction(tc.in)
		if n != tc.name || q != tc.qual {
			t.Errorf("SplitFunction(%q) = %q, %q; want %q, %q", tc.in, n, q, tc.name, tc.qual)
		}
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		typ, msg string
		status   int
		want     Class
	}{
		{"TooManyRequestsException", "Rate Exceeded.", 429, ClassRetry},
		{"ServiceException", "", 500, ClassRetry},
		{"", "", 503, ClassRetry},
		{"", "", 0, ClassRetry},
		{"ResourceConflictException", "The operation cannot be performed at this time.", 409, ClassRetry},
		{"ResourceNotReadyException", "", 502, ClassRetry},
		{"EC2ThrottledException", "", 502, ClassRetry},
		{"EC2UnexpectedException", "", 502, ClassRetry},
		{"ENILimitReachedException", "", 502, ClassRetry},
		{"SubnetIPAddressLimitReachedException", "", 502, ClassRetry},
		{"SnapStartNotReadyException", "", 409, ClassRetry},
		{"SnapStartTimeoutException", "", 408, ClassRetry},
		{"EFSMountConnectivityException", "", 408, ClassRetry},
		{"EFSMountTimeoutException", "", 408, ClassRetry},
		{"EFSIOException", "", 410, ClassRetry},
		{"S3FilesMountConnectivityException", "", 408, ClassRetry},
		{"S3FilesMountTimeoutException", "", 408, ClassRetry},
		{"EC2AccessDeniedException", "", 502, ClassRetryConfig},
		{"InvalidSubnetIDException", "", 502, ClassRetryConfig},
		{"InvalidSecurityGroupIDException", "", 502, ClassRetryConfig},
		{"KMSAccessDeniedException", "", 502, ClassRetryConfig},
		{"KMSDisabledException", "", 502, ClassRetryConfig},
		{"KMSInvalidStateException", "", 502, ClassRetryConfig},
		{"KMSNotFoundException", "", 502, ClassRetryConfig},
		{"InvalidRuntimeException", "", 502, ClassRetryConfig},
		{"InvalidZipFileException", "", 502, ClassRetryConfig},
		{"EFSMountFailureException", "", 403, ClassRetryConfig},
		{"S3FilesMountFailureException", "", 403, ClassRetryConfig},
		{"SnapStartException", "", 400, ClassRetryConfig},
		{"NoPublishedVersionException", "", 400, ClassRetryConfig},
		{"ResourceNotFoundException", "Function not found: arn", 404, ClassMapping},
		{"AccessDeniedException", "", 403, ClassMapping},
		{"ValidationException", "", 400, ClassMapping},
		{"InvalidParameterValueException", "The derived qualifier from the function name does not match the specified qualifier.", 400, ClassMapping},
		{"InvalidParameterValueException", "Could not parse request body into json", 400, ClassBadBatch},
		{"RequestTooLargeException", "", 413, ClassBadBatch},
		{"RequestEntityTooLargeException", "Request must be smaller than 6291456 bytes for the InvokeFunction operation", 413, ClassBadBatch},
		{"SerializedRequestEntityTooLargeException", "", 413, ClassBadBatch},
		{"InvalidRequestContentException", "", 400, ClassBadBatch},
		{"UnsupportedMediaTypeException", "", 415, ClassBadBatch},
		{"RecursiveInvocationException", "", 400, ClassBadBatch},
		{"SomethingNew", "", 404, ClassMapping},
		{"SomethingNew", "", 400, ClassBadBatch},
	}
	for _, tc := range tests {
		if got := Classify(tc.typ, tc.msg, tc.status); got != tc.want {
			t.Errorf("Classify(%q, %d) = %v, want %v", tc.typ, tc.status, got, tc.want)
		}
	}
}
