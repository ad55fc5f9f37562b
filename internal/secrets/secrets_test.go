package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.json")
	os.WriteFile(path, []byte(`{"arn:aws:secretsmanager:us-east-1:000000000000:secret:mq":{"username":"guest","password":"hunter2"}}`), 0o600)
	r, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := r.Get(context.Background(), "arn:aws:secretsmanager:us-east-1:000000000000:secret:mq", Target{})
	if err != nil || s.Username() != "guest" || s.Password() != "hunter2" {
		t.Fatalf("%v %v", s, err)
	}
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		if out := fmt.Sprintf(f, s); strings.Contains(out, "hunter2") {
			t.Errorf("%s prints the password: %s", f, out)
		}
	}
	_, err = r.Get(context.Background(), "arn:other", Target{})
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown secret: %v", err)
	}
}

func TestBadFiles(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"syntax": `{"a": {"password": "hunter2"`,
		"shape":  `["hunter2"]`,
		"type":   `{"a":{"password":42}}`,
	} {
		path := filepath.Join(dir, name)
		os.WriteFile(path, []byte(content), 0o600)
		_, err := Load(path, nil)
		if err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestBasicAuth(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.json")
	os.WriteFile(path, []byte(`{"a":{"username":"guest","password":"hunter2"},"b":{"password":"x"}}`), 0o600)
	r, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if u, p, err := r.BasicAuth(context.Background(), "a", Target{}); err != nil || u != "guest" || p != "hunter2" {
		t.Fatalf("%q %q %v", u, p, err)
	}
	if _, _, err := r.BasicAuth(context.Background(), "b", Target{}); err == nil || !strings.Contains(err.Error(), "has no username") {
		t.Errorf("secret without a username: %v", err)
	}
	if _, _, err := r.BasicAuth(context.Background(), "c", Target{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown secret: %v", err)
	}
}

func TestAllowedEndpoints(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.json")
	os.WriteFile(path, []byte(`{
	"open": {"username": "u", "password": "hunter2"},
	"kafka": {"username": "u", "password": "hunter2",
		"esmd:allowed-endpoints": ["broker-1.example.com:9096", "*.kafka.example.net:*", "[::1]:9092", "127.0.0.1:9092"]},
	"msk": {"username": "u", "password": "hunter2",
		"esmd:allowed-endpoints": "arn:aws:kafka:us-east-1:123456789012:cluster/prod/*, mq.example.com:5671"},
	"nowhere": {"username": "u", "password": "hunter2", "esmd:allowed-endpoints": []}
	}`), 0o600)
	r, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	mskArn := "arn:aws:kafka:us-east-1:123456789012:cluster/prod/0f1e-2d3c"
	for _, tc := range []struct {
		secret string
		to     Target
		denied string // the endpoint the error names; "" when allowed
	}{
		{"open", Target{Endpoints: []string{"evil.example.org:9092"}}, ""},
		{"kafka", Target{Endpoints: []string{"broker-1.example.com:9096"}}, ""},
		{"kafka", Target{Endpoints: []string{"BROKER-1.example.com.:9096"}}, ""},
		{"kafka", Target{Endpoints: []string{"broker-1.example.com:9092"}}, "broker-1.example.com:9092"},
		{"kafka", Target{Endpoints: []string{"b-3.kafka.example.net:9094", "b-1.kafka.example.net:9096"}}, ""},
		{"kafka", Target{Endpoints: []string{"kafka.example.net:9094"}}, "kafka.example.net:9094"},
		{"kafka", Target{Endpoints: []string{"evilkafka.example.net:9094"}}, "evilkafka.example.net:9094"},
		{"kafka", Target{Endpoints: []string{"broker-1.example.com:9096", "attacker.example.org:9092"}}, "attacker.example.org:9092"},
		{"kafka", Target{Endpoints: []string{"[::1]:9092", "127.0.0.1:9092"}}, ""},
		{"kafka", Target{Endpoints: []string{"localhost:9092"}}, "localhost:9092"},
		{"kafka", Target{ARN: mskArn}, mskArn},
		{"msk", Target{ARN: mskArn}, ""},
		{"msk", Target{ARN: mskArn, Endpoints: []string{"anything:1"}}, ""},
		{"msk", Target{ARN: "arn:aws:kafka:us-east-1:123456789012:cluster/test/1"}, "arn:aws:kafka:us-east-1:123456789012:cluster/test/1"},
		{"msk", Target{ARN: "arn:aws:mq:us-east-1:1:broker:b", Endpoints: []string{"mq.example.com:5671"}}, ""},
		{"nowhere", Target{Endpoints: []string{"127.0.0.1:9092"}}, "127.0.0.1:9092"},
	} {
		s, err := r.Get(context.Background(), tc.secret, tc.to)
		if tc.denied == "" {
			if err != nil || s.Password() != "hunter2" {
				t.Errorf("%s to %+v: %v", tc.secret, tc.to, err)
			}
			if _, ok := s[AllowedKey]; ok {
				t.Errorf("%s: the restriction is one of the secret's fields", tc.secret)
			}
			continue
		}
		var de *DeniedError
		if !errors.As(err, &de) || !errors.Is(err, ErrDenied) || de.Secret != tc.secret || de.Endpoint != tc.denied || s != nil {
			t.Errorf("%s to %+v: %v (%+v), want refused for %s", tc.secret, tc.to, err, s, tc.denied)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), tc.denied) {
			t.Errorf("error %q", err)
		}
		if _, _, err := r.BasicAuth(context.Background(), tc.secret, tc.to); !errors.Is(err, ErrDenied) {
			t.Errorf("BasicAuth %s to %+v: %v", tc.secret, tc.to, err)
		}
		if err := r.Allow(context.Background(), tc.secret, tc.to); !errors.Is(err, ErrDenied) {
			t.Errorf("Allow %s to %+v: %v", tc.secret, tc.to, err)
		}
	}
}

func TestBadAllowedEndpoints(t *testing.T) {
	for name, v := range map[string]string{
		"number":       `42`,
		"object":       `{"a": "b"}`,
		"entry type":   `["a:1", 2]`,
		"no port":      `["broker.example.com"]`,
		"port":         `["broker.example.com:http"]`,
		"port range":   `["broker.example.com:70000"]`,
		"inner star":   `["broker.*.example.com:9092"]`,
		"star suffix":  `["broker*:9092"]`,
		"empty host":   `[":9092"]`,
		"string entry": `"a:1,b"`,
	} {
		path := filepath.Join(t.TempDir(), "secrets.json")
		os.WriteFile(path, []byte(`{"s": {"password": "hunter2", "esmd:allowed-endpoints": `+v+`}}`), 0o600)
		_, err := Load(path, nil)
		if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), AllowedKey) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestHostPort(t *testing.T) {
	for in, want := range map[string]string{
		"broker:9092":                         "broker:9092",
		"broker":                              "broker:9092",
		"[::1]:9093":                          "[::1]:9093",
		"amqps://user:pw@b-1.mq.example:5671": "b-1.mq.example:5671",
		"amqps://b-1.mq.example/vhost":        "b-1.mq.example:9092",
		"stomp+ssl://10.0.0.1:61614?x=1":      "10.0.0.1:61614",
	} {
		if got := HostPort(in, "9092"); got != want {
			t.Errorf("HostPort(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSecretsFileModeWarning(t *testing.T) {
	for mode, want := range map[os.FileMode]string{
		0o600: "",
		0o640: "",
		0o644: "readable by every user",
		0o660: "writable by other users",
		0o666: "writable by other users",
	} {
		path := filepath.Join(t.TempDir(), "secrets.json")
		os.WriteFile(path, []byte(`{"s": {"password": "hunter2", "esmd:allowed-endpoints": ["a:1"]}}`), 0o600)
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		var buf strings.Builder
		if _, err := Load(path, slog.New(slog.NewTextHandler(&buf, nil))); err != nil {
			t.Fatal(err)
		}
		if got := buf.String(); (want == "") != (got == "") || !strings.Contains(got, want) || strings.Contains(got, "hunter2") {
			t.Errorf("mode %04o: log %q, want %q", mode, got, want)
		}
	}
}

func TestUnrestrictedSecretsAreLogged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.json")
	os.WriteFile(path, []byte(`{"open": {"password": "hunter2"}, "closed": {"password": "x", "esmd:allowed-endpoints": ["a:1"]}}`), 0o600)
	var buf strings.Builder
	if _, err := Load(path, slog.New(slog.NewTextHandler(&buf, nil))); err != nil {
		t.Fatal(err)
	}
	if got := buf.String(); !strings.Contains(got, "open") || strings.Contains(got, "closed") || strings.Contains(got, "hunter2") {
		t.Errorf("log %q", got)
	}
}

func TestSecretsManagerEntry(t *testing.T) {
	// A Secrets Manager secret carries the restriction in its JSON, as a
	// list or (the console's key/value editor) a comma-separated string.
	for _, js := range []string{
		`{"username": "u", "password": "p", "esmd:allowed-endpoints": ["b:9096"]}`,
		`{"username": "u", "password": "p", "esmd:allowed-endpoints": "b:9096"}`,
	} {
		var fields map[string]any
		if err := json.Unmarshal([]byte(js), &fields); err != nil {
			t.Fatal(err)
		}
		e, err := parseEntry(fields)
		if err != nil || e.allowed == nil || len(e.secret) != 2 {
			t.Fatalf("%s: %+v %v", js, e, err)
		}
		if e.allowed.check("s", Target{Endpoints: []string{"b:9096"}}) != nil || e.allowed.check("s", Target{Endpoints: []string{"c:9096"}}) == nil {
			t.Errorf("%s: restriction not applied", js)
		}
	}
}

// TestRequireRestriction: with RequireRestriction, a secret without
// esmd:allowed-endpoints is refused for every target (a Secrets Manager
// secret written for something else cannot carry the field), and a
// restricted one still goes where it says.
func TestRequireRestriction(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.json")
	os.WriteFile(path, []byte(`{"open": {"username": "u", "password": "hunter2"}, "closed": {"username": "u", "password": "x", "esmd:allowed-endpoints": ["b:9096"]}}`), 0o600)
	r, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	to := Target{Endpoints: []string{"b:9096"}}
	if _, _, err := r.BasicAuth(ctx, "open", to); err != nil {
		t.Fatalf("without the requirement: %v", err)
	}
	r.RequireRestriction()
	for _, tc := range []struct {
		secret string
		to     Target
		want   string
	}{
		{"open", to, "the secret open may not be sent to b:9096: it has no esmd:allowed-endpoints"},
		{"open", Target{ARN: "arn:aws:kafka:us-east-1:1:cluster/c/1"}, "the secret open may not be sent to arn:aws:kafka:us-east-1:1:cluster/c/1: it has no"},
		{"closed", to, ""},
		{"closed", Target{Endpoints: []string{"c:9096"}}, "the secret closed may not be sent to c:9096: the endpoint is not in"},
	} {
		_, _, err := r.BasicAuth(ctx, tc.secret, tc.to)
		aerr := r.Allow(ctx, tc.secret, tc.to)
		for _, err := range []error{err, aerr} {
			var de *DeniedError
			if tc.want == "" && err != nil || tc.want != "" && (!errors.As(err, &de) || !strings.HasPrefix(err.Error(), tc.want)) {
				t.Errorf("%s to %v: %v, want %q", tc.secret, tc.to, err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the error shows the password: %v", err)
			}
		}
	}
}
