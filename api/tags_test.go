package api

import (
	"net/url"
	"strings"
	"testing"
)

// TestTagLimitsOverHTTP: the tagging routes hand the engine what the caller
// sent, so a missing Tags member, an empty map and an UntagResource without
// tagKeys each get their own AWS answer.
func TestTagLimitsOverHTTP(t *testing.T) {
	u := start(t).srv.URL
	resp, body := rawDo(t, "POST", u+"/2015-03-31/event-source-mappings", strings.NewReader(`{"FunctionName":"f","EventSourceArn":"`+sqsArn+`"}`))
	if resp.StatusCode != 202 {
		t.Fatal(body)
	}
	tags := u + "/2017-03-31/tags/" + url.PathEscape(body["EventSourceMappingArn"].(string))
	keys := make([]string, 51)
	for i := range keys {
		keys[i] = `"k` + strings.Repeat("x", i) + `":"v"`
	}
	many := `{"Tags":{` + strings.Join(keys, ",") + `}}`
	for _, tc := range []struct {
		name, method, url, body string
		status                  int
		typ, message            string
	}{
		{"no Tags", "POST", tags, `{}`, 400, "ValidationException",
			"1 validation error detected: Value null at 'tags' failed to satisfy constraint: Member must not be null"},
		{"empty Tags", "POST", tags, `{"Tags":{}}`, 400, "InvalidParameterValueException", "An error occurred and the request cannot be processed."},
		{"51 tags", "POST", tags, many, 400, "InvalidParameterValueException", "Number of tags exceeds resource tag limit."},
		{"aws: key", "POST", tags, `{"Tags":{"aws:x":"v"}}`, 400, "InvalidParameterValueException", "Invalid tag key aws:x: the aws: prefix is reserved for AWS use."},
		{"untag without keys", "DELETE", tags, ``, 400, "ValidationException",
			"1 validation error detected: Value null at 'tagKeys' failed to satisfy constraint: Member must not be null"},
		{"untag", "DELETE", tags + "?tagKeys=a", ``, 204, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := rawDo(t, tc.method, tc.url, strings.NewReader(tc.body))
			if resp.StatusCode != tc.status || resp.Header.Get("X-Amzn-ErrorType") != tc.typ {
				t.Fatalf("%d %q %v, want %d %s", resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"), body, tc.status, tc.typ)
			}
			if tc.message != "" && body["message"] != tc.message && body["Message"] != tc.message {
				t.Errorf("body %v, want message %q", body, tc.message)
			}
		})
	}
}
