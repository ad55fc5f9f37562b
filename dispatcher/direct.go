package dispatcher

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
)

// direct is the direct-HTTP Invoke path (WithDirectHTTP): the request is
// built, signed (SigV4, the SDK's signer and credentials) and read here
// instead of through the SDK's middleware stack, which costs about 100 us
// and 400 allocations per call. The endpoint is the one the SDK client
// resolved (WithEndpoint, AWS_ENDPOINT_URL_LAMBDA, AWS_ENDPOINT_URL, FIPS,
// dual-stack, the region's default).
type direct struct {
	endpoint string // scheme://host[:port][/base], no trailing slash
	region   string
	creds    aws.CredentialsProvider // nil: do not sign
	signer   *v4.Signer
	hc       *http.Client
	unsigned bool
	maxResp  int64
}

// resolveEndpoint returns the Invoke endpoint the SDK client resolved.
func resolveEndpoint(ctx context.Context, client *lambda.Client) (string, error) {
	o := client.Options()
	params := lambda.EndpointParameters{Region: aws.String(o.Region), Endpoint: o.BaseEndpoint,
		UseDualStack: aws.Bool(o.EndpointOptions.UseDualStackEndpoint == aws.DualStackEndpointStateEnabled),
		UseFIPS:      aws.Bool(o.EndpointOptions.UseFIPSEndpoint == aws.FIPSEndpointStateEnabled)}
	ep, err := o.EndpointResolverV2.ResolveEndpoint(ctx, params)
	if err != nil {
		return "", fmt.Errorf("dispatcher: resolve the Lambda endpoint: %w", err)
	}
	return strings.TrimSuffix(ep.URI.String(), "/"), nil
}

func newDirect(ctx context.Context, client *lambda.Client, hc *http.Client, unsigned bool, maxResp int64) (*direct, error) {
	o := client.Options()
	endpoint, err := resolveEndpoint(ctx, client)
	if err != nil {
		return nil, err
	}
	d := &direct{endpoint: endpoint, region: o.Region, signer: v4.NewSigner(),
		hc: hc, unsigned: unsigned, maxResp: maxResp}
	if _, anon := o.Credentials.(aws.AnonymousCredentials); o.Credentials != nil && !anon {
		d.creds = o.Credentials
	}
	return d, nil
}

// escapePathSegment percent-encodes everything but RFC 3986 unreserved
// characters, as the SDK does for the FunctionName label (":" -> "%3A").
func escapePathSegment(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

func (d *direct) invoke(ctx context.Context, name, qualifier string, body []byte) (*http.Response, []byte, error) {
	u := d.endpoint + "/2015-03-31/functions/" + escapePathSegment(name) + "/invocations"
	if qualifier != "" {
		u += "?Qualifier=" + url.QueryEscape(qualifier)
	}
	// The transport may still read the body after Do returned (an
	// answer that came before the whole request was written); invoke
	// waits until it has closed every body it was given, so that the
	// caller may reuse the payload's memory once Invoke returns.
	var bodies sync.WaitGroup
	var req *http.Request
	sent := false
	defer func() {
		if req != nil && !sent {
			req.Body.Close() // never handed to the transport
		}
		bodies.Wait()
	}()
	newBody := func() io.ReadCloser {
		bodies.Add(1)
		return &releasingBody{Reader: bytes.NewReader(body), done: bodies.Done}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, http.NoBody)
	if err != nil {
		return nil, nil, err
	}
	if len(body) > 0 {
		req.Body, req.ContentLength = newBody(), int64(len(body))
		req.GetBody = func() (io.ReadCloser, error) { return newBody(), nil }
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("X-Amz-Invocation-Type", "RequestResponse")
	req.Header.Set("User-Agent", "esmd")
	if d.creds != nil {
		creds, err := d.creds.Retrieve(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("retrieve credentials: %w", err)
		}
		hash := "UNSIGNED-PAYLOAD"
		if !d.unsigned {
			sum := sha256.Sum256(body)
			hash = hex.EncodeToString(sum[:])
		}
		if err := d.signer.SignHTTP(ctx, creds, req, hash, "lambda", d.region, time.Now()); err != nil {
			return nil, nil, fmt.Errorf("sign: %w", err)
		}
	}
	sent = true
	resp, err := d.hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	// limitTransport already bounds the body; read it whole.
	respBody, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	return resp, respBody, nil
}

// releasingBody is a request body that reports its first Close.
type releasingBody struct {
	*bytes.Reader
	once sync.Once
	done func()
}

func (b *releasingBody) Close() error {
	b.once.Do(b.done)
	return nil
}

// directResult turns a direct response into a Result or an *InvokeError.
func (l *LambdaInvoker) directResult(resp *http.Response, body []byte) (Result, error) {
	if resp.StatusCode/100 == 2 {
		res := Result{StatusCode: resp.StatusCode, FunctionError: resp.Header.Get("X-Amz-Function-Error"),
			ExecutedVersion: resp.Header.Get("X-Amz-Executed-Version"), Payload: body}
		if res.ExecutedVersion == "" {
			res.ExecutedVersion = "$LATEST"
		}
		if res.FunctionError != "" {
			res.ErrorType = errorType(body)
		} else if l.opts.mode == ModeRIE {
			rieFunctionError(&res)
		}
		return res, nil
	}
	if l.opts.mode == ModeRIE && resp.StatusCode == http.StatusBadGateway {
		return Result{StatusCode: http.StatusOK, FunctionError: "Unhandled", ErrorType: "Runtime.ExitError",
			ExecutedVersion: "$LATEST", Payload: body}, nil
	}
	ie := &InvokeError{StatusCode: resp.StatusCode}
	ie.Type, ie.Message = restJSONError(resp.Header, body)
	if ie.StatusCode == http.StatusTooManyRequests {
		ie.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	ie.Class = Classify(ie.Type, ie.Message, ie.StatusCode)
	ie.Err = fmt.Errorf("lambda Invoke: HTTP %d %s", resp.StatusCode, ie.Type)
	return Result{}, ie
}

// restJSONError reads a REST-JSON error: the code from X-Amzn-ErrorType
// ("Name:http://..." keeps Name), else the body's "__type"/"code"/"Type"
// when it names an exception; RIE's Error-Type header; the message from
// "message"/"Message"/"errorMessage".
func restJSONError(h http.Header, body []byte) (typ, msg string) {
	typ = h.Get("X-Amzn-ErrorType")
	if typ == "" {
		typ = h.Get("Error-Type")
	}
	var m map[string]any
	if len(body) > 0 && body[0] == '{' {
		_ = json.Unmarshal(body, &m)
	}
	if typ == "" {
		for _, k := range []string{"__type", "code", "errorType"} {
			if s, ok := m[k].(string); ok && s != "" {
				typ = s
				break
			}
		}
	}
	if i := strings.IndexAny(typ, ":"); i >= 0 {
		typ = typ[:i]
	}
	if i := strings.LastIndexByte(typ, '#'); i >= 0 {
		typ = typ[i+1:]
	}
	for _, k := range []string{"message", "Message", "errorMessage"} {
		if s, ok := m[k].(string); ok {
			msg = s
			break
		}
	}
	return typ, msg
}
