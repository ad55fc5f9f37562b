package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/esmd/esmd/esm"
)

const (
	testKeyID  = "AKIDESMDTEST"
	testSecret = "esmd-test-secret"
)

var testCreds = Credentials{testKeyID: {AccessKeyID: testKeyID, SecretAccessKey: testSecret}}

// startProtected serves the API over a fresh engine behind Protect(p).
func startProtected(t *testing.T, p Policy) *env {
	t.Helper()
	e, err := esm.New(context.Background(), esm.WithRegion(region), esm.WithAccount(account), esm.WithPatternValidator(compilePatterns))
	if err != nil {
		t.Fatal(err)
	}
	e.Start()
	srv := httptest.NewServer(Protect(New(e, nil), p))
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.Close(ctx)
	})
	return &env{engine: e, srv: srv, client: signedClient(srv.URL, testKeyID, testSecret)}
}

func signedClient(url, id, secret string) *lambda.Client {
	return lambda.New(lambda.Options{BaseEndpoint: aws.String(url), Region: "eu-west-3", RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(id, secret, "")})
}

// TestSignedSDKDrivesEveryOperation runs every mapping operation of the
// AWS SDK for Go v2 against esmd with authentication on.
func TestSignedSDKDrivesEveryOperation(t *testing.T) {
	ctx := context.Background()
	env := startProtected(t, Policy{Verifier: NewVerifier(testCreds, nil)})
	c := env.client
	created, err := c.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{
		FunctionName: aws.String("my-function"), EventSourceArn: aws.String(kinArn), Enabled: aws.Bool(false),
		StartingPosition: types.EventSourcePositionLatest, Tags: map[string]string{"team": "a b/c"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: created.UUID}); err != nil {
		t.Fatal(err)
	}
	list, err := c.ListEventSourceMappings(ctx, &lambda.ListEventSourceMappingsInput{FunctionName: aws.String("my-function"),
		EventSourceArn: aws.String(kinArn), MaxItems: aws.Int32(5)})
	if err != nil || len(list.EventSourceMappings) != 1 {
		t.Fatalf("list: %v %+v", err, list)
	}
	if _, err := c.UpdateEventSourceMapping(ctx, &lambda.UpdateEventSourceMappingInput{UUID: created.UUID, BatchSize: aws.Int32(7)}); err != nil {
		t.Fatal(err)
	}
	arn := created.EventSourceMappingArn
	if _, err := c.TagResource(ctx, &lambda.TagResourceInput{Resource: arn, Tags: map[string]string{"k:x": "v=1", "é": "ü"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UntagResource(ctx, &lambda.UntagResourceInput{Resource: arn, TagKeys: []string{"team", "k:x"}}); err != nil {
		t.Fatal(err)
	}
	tags, err := c.ListTags(ctx, &lambda.ListTagsInput{Resource: arn})
	if err != nil {
		t.Fatal(err)
	}
	if len(tags.Tags) != 1 || tags.Tags["é"] != "ü" {
		t.Errorf("tags %v", tags.Tags)
	}
	if _, err := c.DeleteEventSourceMapping(ctx, &lambda.DeleteEventSourceMappingInput{UUID: created.UUID}); err != nil {
		t.Fatal(err)
	}
}

// TestAuthErrorsThroughTheSDK checks what a client with the wrong
// credentials, or none, gets: AWS's exception, status and message.
func TestAuthErrorsThroughTheSDK(t *testing.T) {
	env := startProtected(t, Policy{Verifier: NewVerifier(testCreds, nil)})
	anon := lambda.New(lambda.Options{BaseEndpoint: aws.String(env.srv.URL), Region: region, RetryMaxAttempts: 1,
		Credentials: aws.AnonymousCredentials{}})
	for _, tc := range []struct {
		name   string
		client *lambda.Client
		code   string
		msg    string
	}{
		{"unsigned", anon, ErrTypeMissingToken, "Missing Authentication Token"},
		{"unknown key", signedClient(env.srv.URL, "AKIDOTHER", testSecret), ErrTypeUnrecognizedClient, "The security token included in the request is invalid."},
		{"wrong secret", signedClient(env.srv.URL, testKeyID, "wrong"), ErrTypeInvalidSignature, "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.client.ListEventSourceMappings(context.Background(), &lambda.ListEventSourceMappingsInput{})
			code, msg, status := apiErr(t, err)
			if code != tc.code || !strings.HasPrefix(msg, tc.msg) || status != 403 {
				t.Errorf("got %s %d %q", code, status, msg)
			}
		})
	}
}

// signedRequest builds a request signed by the SDK's signer at signTime,
// then lets mutate change it.
func signedRequest(t *testing.T, method, target, body string, signTime time.Time, opts ...func(*v4.SignerOptions)) *http.Request {
	t.Helper()
	req := newTestRequest(method, target, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	sum := sha256.Sum256([]byte(body))
	err := v4.NewSigner(opts...).SignHTTP(context.Background(), aws.Credentials{AccessKeyID: testKeyID, SecretAccessKey: testSecret},
		req, hex.EncodeToString(sum[:]), "lambda", "ap-south-1", signTime)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// newTestRequest is httptest.NewRequest addressed to 127.0.0.1:9000
// unless target names a host.
func newTestRequest(method, target string, body io.Reader) *http.Request {
	if strings.HasPrefix(target, "/") {
		target = "http://127.0.0.1:9000" + target
	}
	return httptest.NewRequest(method, target, body)
}

func TestVerifier(t *testing.T) {
	now := time.Date(2026, 5, 4, 12, 0, 0, 0, time.UTC)
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	})
	h := Protect(next, Policy{Verifier: NewVerifier(testCreds, func() time.Time { return now })})
	const esmPath = "/2015-03-31/event-source-mappings/"
	tagPath := "/2017-03-31/tags/arn%3Aaws%3Alambda%3Aus-east-1%3A111111111111%3Aevent-source-mapping%3Aabc"
	for _, tc := range []struct {
		name   string
		req    func() *http.Request
		status int
		code   string
		msg    string // prefix
	}{
		{name: "signed GET", req: func() *http.Request { return signedRequest(t, "GET", esmPath+"?FunctionName=f&MaxItems=5", "", now) }, status: 200},
		{name: "signed POST", req: func() *http.Request { return signedRequest(t, "POST", esmPath, `{"FunctionName":"f"}`, now) }, status: 200},
		{name: "repeated query keys, encoded path", req: func() *http.Request {
			return signedRequest(t, "DELETE", tagPath+"?tagKeys=b%20x&tagKeys=a&tagKeys=%C3%A9", "", now)
		}, status: 200},
		{name: "clock 4 min behind", req: func() *http.Request { return signedRequest(t, "GET", esmPath, "", now.Add(-4*time.Minute)) }, status: 200},
		{name: "unsigned payload", req: func() *http.Request {
			req := newTestRequest("POST", esmPath, strings.NewReader(`{}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")
			v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: testKeyID, SecretAccessKey: testSecret},
				req, "UNSIGNED-PAYLOAD", "lambda", "us-east-1", now)
			return req
		}, status: 200},
		{name: "presigned", req: func() *http.Request {
			req := newTestRequest("GET", esmPath+"?MaxItems=2", nil)
			q := req.URL.Query()
			q.Set("X-Amz-Expires", "60")
			req.URL.RawQuery = q.Encode()
			sum := sha256.Sum256(nil)
			u, _, err := v4.NewSigner().PresignHTTP(context.Background(), aws.Credentials{AccessKeyID: testKeyID, SecretAccessKey: testSecret},
				req, hex.EncodeToString(sum[:]), "lambda", "us-east-1", now)
			if err != nil {
				t.Fatal(err)
			}
			return newTestRequest("GET", u, nil)
		}, status: 200},
		{name: "no signature", req: func() *http.Request { return newTestRequest("GET", esmPath, nil) },
			status: 403, code: ErrTypeMissingToken, msg: "Missing Authentication Token"},
		{name: "expired", req: func() *http.Request { return signedRequest(t, "GET", esmPath, "", now.Add(-6*time.Minute)) },
			status: 403, code: ErrTypeInvalidSignature, msg: "Signature expired: 20260504T115400Z is now earlier than 20260504T115500Z (20260504T120000Z - 5 min.)"},
		{name: "from the future", req: func() *http.Request { return signedRequest(t, "GET", esmPath, "", now.Add(6*time.Minute)) },
			status: 403, code: ErrTypeInvalidSignature, msg: "Signature not yet current: 20260504T120600Z is still later than 20260504T120500Z (20260504T120000Z + 5 min.)"},
		{name: "body changed", req: func() *http.Request {
			req := signedRequest(t, "POST", esmPath, `{"FunctionName":"f"}`, now)
			req.Body = io.NopCloser(strings.NewReader(`{"FunctionName":"g"}`))
			return req
		}, status: 403, code: ErrTypeInvalidSignature, msg: "The request signature we calculated does not match"},
		{name: "query changed", req: func() *http.Request {
			req := signedRequest(t, "GET", esmPath+"?FunctionName=f", "", now)
			req.URL.RawQuery = "FunctionName=g"
			return req
		}, status: 403, code: ErrTypeInvalidSignature, msg: "The request signature we calculated does not match"},
		{name: "signed header changed", req: func() *http.Request {
			req := signedRequest(t, "GET", esmPath, "", now)
			req.Host = "127.0.0.1:9001"
			return req
		}, status: 403, code: ErrTypeInvalidSignature, msg: "The request signature we calculated does not match"},
		{name: "wrong service", req: func() *http.Request {
			req := newTestRequest("GET", esmPath, nil)
			v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: testKeyID, SecretAccessKey: testSecret},
				req, hex.EncodeToString(make([]byte, 32)), "sqs", "us-east-1", now)
			return req
		}, status: 403, code: ErrTypeInvalidSignature, msg: "Credential should be scoped to correct service: 'lambda'. "},
		{name: "unknown key", req: func() *http.Request {
			req := signedRequest(t, "GET", esmPath, "", now)
			req.Header.Set("Authorization", strings.Replace(req.Header.Get("Authorization"), testKeyID, "AKIDNOBODY", 1))
			return req
		}, status: 403, code: ErrTypeUnrecognizedClient, msg: "The security token included in the request is invalid."},
		{name: "not SigV4", req: func() *http.Request {
			req := newTestRequest("GET", esmPath, nil)
			req.Header.Set("Authorization", "Bearer abc")
			return req
		}, status: 403, code: ErrTypeIncompleteSignature, msg: "Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization=Bearer abc"},
		{name: "pair without equal sign", req: func() *http.Request {
			req := newTestRequest("GET", esmPath, nil)
			req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDESMDTEST/20260504/us-east-1/lambda/aws4_request, SignedHeaders")
			return req
		}, status: 403, code: ErrTypeIncompleteSignature, msg: "'SignedHeaders' not a valid key=value pair (missing equal-sign) in Authorization header"},
		{name: "body replaced, its hash sent", req: func() *http.Request {
			req := signedRequest(t, "POST", esmPath, `{"FunctionName":"f"}`, now)
			sum := sha256.Sum256([]byte(`{"FunctionName":"g"}`))
			req.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:]))
			req.Body = io.NopCloser(strings.NewReader(`{"FunctionName":"g"}`))
			return req
		}, status: 403, code: ErrTypeInvalidSignature, msg: "The request signature we calculated does not match"},
		{name: "body replaced, the old hash sent", req: func() *http.Request {
			req := signedRequest(t, "POST", esmPath, `{"FunctionName":"f"}`, now)
			sum := sha256.Sum256([]byte(`{"FunctionName":"f"}`))
			req.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:]))
			req.Body = io.NopCloser(strings.NewReader(`{"FunctionName":"g"}`))
			return req
		}, status: 403, code: ErrTypeInvalidSignature, msg: "The provided 'x-amz-content-sha256' header does not match what was computed."},
		{name: "body replaced, UNSIGNED-PAYLOAD claimed", req: func() *http.Request {
			req := signedRequest(t, "POST", esmPath, `{"FunctionName":"f"}`, now)
			req.Header.Set("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")
			req.Body = io.NopCloser(strings.NewReader(`{"FunctionName":"g"}`))
			return req
		}, status: 403, code: ErrTypeInvalidSignature, msg: "The request signature we calculated does not match"},
		{name: "presigned, expired", req: func() *http.Request {
			req := newTestRequest("GET", esmPath, nil)
			q := req.URL.Query()
			q.Set("X-Amz-Expires", "60")
			req.URL.RawQuery = q.Encode()
			sum := sha256.Sum256(nil)
			u, _, _ := v4.NewSigner().PresignHTTP(context.Background(), aws.Credentials{AccessKeyID: testKeyID, SecretAccessKey: testSecret},
				req, hex.EncodeToString(sum[:]), "lambda", "us-east-1", now.Add(-2*time.Minute))
			return newTestRequest("GET", u, nil)
		}, status: 403, code: ErrTypeInvalidSignature, msg: "Signature expired: 20260504T115800Z is now earlier than 20260504T115900Z (20260504T120000Z - 60 sec.)"},
		{name: "presigned for longer than a week", req: func() *http.Request {
			req := newTestRequest("GET", esmPath, nil)
			q := req.URL.Query()
			q.Set("X-Amz-Expires", "604801")
			req.URL.RawQuery = q.Encode()
			sum := sha256.Sum256(nil)
			u, _, _ := v4.NewSigner().PresignHTTP(context.Background(), aws.Credentials{AccessKeyID: testKeyID, SecretAccessKey: testSecret},
				req, hex.EncodeToString(sum[:]), "lambda", "us-east-1", now)
			return newTestRequest("GET", u, nil)
		}, status: 403, code: ErrTypeIncompleteSignature, msg: "X-Amz-Expires must be an integer between 1 and 604800 seconds"},
		{name: "signed path, another path sent", req: func() *http.Request {
			req := signedRequest(t, "DELETE", esmPath+"aaaa", "", now)
			req.URL.Path, req.RequestURI = esmPath+"bbbb", esmPath+"bbbb"
			return req
		}, status: 403, code: ErrTypeInvalidSignature, msg: "The request signature we calculated does not match"},
		{name: "host not signed", req: func() *http.Request {
			req := signedRequest(t, "GET", esmPath, "", now)
			req.Header.Set("Authorization", strings.Replace(req.Header.Get("Authorization"), "SignedHeaders=host;", "SignedHeaders=", 1))
			return req
		}, status: 403, code: ErrTypeInvalidSignature, msg: "'Host' or ':authority' must be a 'SignedHeader'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, tc.req())
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			if tc.code == "" {
				return
			}
			var body map[string]string
			json.Unmarshal(rec.Body.Bytes(), &body)
			if got := rec.Header().Get("X-Amzn-ErrorType"); got != tc.code || !strings.HasPrefix(body["message"], tc.msg) || len(body) != 1 {
				t.Errorf("got %s %v, want %s %q", got, body, tc.code, tc.msg)
			}
		})
	}
}

func TestParseCredentials(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		ids      []string
		err      string
	}{
		{name: "two profiles", in: "# keys\n[default]\naws_access_key_id = A1\naws_secret_access_key = s1\n\n[profile ci]\nAWS_ACCESS_KEY_ID=A2\naws_secret_access_key=s2\naws_session_token = tok\nregion = eu-west-1\n", ids: []string{"A1", "A2"}},
		{name: "section without keys is skipped", in: "[a]\nregion=x\n[b]\naws_access_key_id=B\naws_secret_access_key=s\n", ids: []string{"B"}},
		{name: "id without secret", in: "[a]\naws_access_key_id=A\n", err: "[a] (line 1): aws_access_key_id and aws_secret_access_key must both be set"},
		{name: "empty", in: "", err: "no aws_access_key_id / aws_secret_access_key pair"},
		{name: "key outside section", in: "aws_access_key_id=A\n", err: "line 1: key outside a [section]"},
		{name: "not key=value", in: "[a]\nnonsense\n", err: "line 2: expected key = value"},
		{name: "duplicate id", in: "[a]\naws_access_key_id=A\naws_secret_access_key=1\n[b]\naws_access_key_id=A\naws_secret_access_key=2\n", err: "appears twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseCredentials([]byte(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(c.IDs(), ","); got != strings.Join(tc.ids, ",") {
				t.Errorf("ids %s", got)
			}
		})
	}
	c, _ := ParseCredentials([]byte("[p]\naws_access_key_id=A2\naws_secret_access_key = s2 \naws_session_token=tok\n"))
	if c["A2"] != (Credential{AccessKeyID: "A2", SecretAccessKey: "s2", SessionToken: "tok"}) {
		t.Errorf("parsed %+v", c["A2"])
	}
}

func TestLoadCredentialsFromEnv(t *testing.T) {
	env := map[string]string{"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK"}
	c, err := LoadCredentials("env", func(k string) string { return env[k] }, nil)
	if err != nil || c["AK"].SecretAccessKey != "SK" {
		t.Fatalf("%v %v", c, err)
	}
	if _, err := LoadCredentials("env", func(string) string { return "" }, nil); err == nil {
		t.Fatal("no variables: no error")
	}
}

func FuzzParseCredentials(f *testing.F) {
	f.Add([]byte("[default]\naws_access_key_id = A\naws_secret_access_key = s\n"))
	f.Add([]byte("[a\n=\n[]\nk=v=w\n;c\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseCredentials(data)
		if err == nil && len(c) == 0 {
			t.Fatal("no error and no credentials")
		}
		for id, cr := range c {
			if id == "" || cr.SecretAccessKey == "" || cr.AccessKeyID != id {
				t.Fatalf("bad credential %q %+v", id, cr)
			}
		}
	})
}

// FuzzVerifier feeds arbitrary Authorization headers, dates and query
// strings: the verifier answers with an API error and never panics or
// accepts.
func FuzzVerifier(f *testing.F) {
	f.Add("AWS4-HMAC-SHA256 Credential=AKIDESMDTEST/20260504/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=00", "20260504T120000Z", "a=b&c")
	f.Add("AWS4-HMAC-SHA256 Credential=/////, SignedHeaders=;;, Signature=", "x", "X-Amz-Signature=1&X-Amz-Algorithm=AWS4-HMAC-SHA256")
	now := time.Date(2026, 5, 4, 12, 0, 0, 0, time.UTC)
	v := NewVerifier(testCreds, func() time.Time { return now })
	f.Fuzz(func(t *testing.T, auth, date, query string) {
		req := httptest.NewRequest("GET", "/2015-03-31/event-source-mappings/", nil)
		req.URL.RawQuery = query
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		req.Header.Set("X-Amz-Date", date)
		s, err := v.parse(req)
		if err == nil {
			err = v.verify(req, s, nil)
		}
		var ae *esm.Error
		if err == nil {
			t.Fatal("accepted")
		}
		if !asAPIError(err, &ae) || ae.Status != 403 {
			t.Fatalf("error %v", err)
		}
	})
}

func asAPIError(err error, target **esm.Error) bool {
	e, ok := err.(*esm.Error)
	*target = e
	return ok
}

func TestCanonicalFormsMatchTheSDK(t *testing.T) {
	// Reserved characters in path and query, repeated keys, an empty
	// value and a header with runs of spaces: the SDK's signature verifies.
	now := time.Now()
	req := httptest.NewRequest("DELETE", "/2017-03-31/tags/arn%3Aaws%3Alambda%3Ax%2Fy?tagKeys=%7E%20%2B&tagKeys=%21&b=", nil)
	req.Host = "localhost:9000"
	req.Header.Add("X-Amz-Meta", "  two   spaces ")
	req.Header.Add("X-Amz-Meta", "second")
	sum := sha256.Sum256(nil)
	if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: testKeyID, SecretAccessKey: testSecret},
		req, hex.EncodeToString(sum[:]), "lambda", "us-east-1", now); err != nil {
		t.Fatal(err)
	}
	v := NewVerifier(testCreds, nil)
	s, err := v.parse(req)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.verify(req, s, nil); err != nil {
		t.Fatal(err)
	}
}
