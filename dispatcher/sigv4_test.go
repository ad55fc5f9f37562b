package dispatcher

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// verifySigV4 checks a request's signature the way AWS does: it rebuilds
// the request from the headers listed in SignedHeaders, signs it again at
// X-Amz-Date with the same credentials and compares the signatures.
func verifySigV4(r *http.Request, body []byte, creds aws.Credentials, region string) (bool, string) {
	auth := r.Header.Get("Authorization")
	i := strings.Index(auth, "SignedHeaders=")
	if i < 0 {
		return false, "no SignedHeaders in " + auth
	}
	signed := strings.Split(strings.SplitN(auth[i+len("SignedHeaders="):], ",", 2)[0], ";")
	when, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return false, "X-Amz-Date: " + err.Error()
	}
	u := *r.URL
	u.Scheme, u.Host = "http", r.Host
	req, _ := http.NewRequest(r.Method, u.String(), bytes.NewReader(body))
	req.URL.RawPath = r.URL.RawPath
	req.URL.Path = r.URL.Path
	for _, h := range signed {
		if h == "host" {
			continue
		}
		req.Header[http.CanonicalHeaderKey(h)] = r.Header.Values(h)
	}
	req.Host = r.Host
	hash := r.Header.Get("X-Amz-Content-Sha256")
	if hash == "" {
		sum := sha256.Sum256(body)
		hash = hex.EncodeToString(sum[:])
	}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hash, "lambda", region, when); err != nil {
		return false, err.Error()
	}
	got := req.Header.Get("Authorization")
	return got == auth, "recomputed " + got + "\nreceived   " + auth
}

// Both Invoke paths sign requests that verify (SHA-256 payload hash, ARN in
// the path, Qualifier in the query).
func TestSigV4(t *testing.T) { eachPath(t, testSigV4) }

func testSigV4(t *testing.T, path Option) {
	creds, _ := testConfig().Credentials.Retrieve(context.Background())
	var ok, wrongOK bool
	var why string
	url := faultServer(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ok, why = verifySigV4(r, body, creds, "us-east-1")
		// The verifier itself must reject a wrong key.
		wrong := creds
		wrong.SecretAccessKey += "x"
		wrongOK, _ = verifySigV4(r, body, wrong, "us-east-1")
		w.Write([]byte(`null`))
	})
	inv := newInvoker(t, url, path)
	if _, err := inv.Invoke(context.Background(), testARN+":PROD", []byte(`{"Records":[{"body":"a/b c"}]}`)); err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Errorf("signature does not verify:\n%s", why)
	}
	if wrongOK {
		t.Error("the verifier accepted a wrong secret key")
	}
}
