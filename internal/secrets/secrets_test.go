package secrets

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.json")
	os.WriteFile(path, []byte(`{"arn:aws:secretsmanager:us-east-1:000000000000:secret:mq":{"username":"guest","password":"hunter2"}}`), 0o600)
	r, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := r.Get(context.Background(), "arn:aws:secretsmanager:us-east-1:000000000000:secret:mq")
	if err != nil || s.Username() != "guest" || s.Password() != "hunter2" {
		t.Fatalf("%v %v", s, err)
	}
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		if out := fmt.Sprintf(f, s); strings.Contains(out, "hunter2") {
			t.Errorf("%s prints the password: %s", f, out)
		}
	}
	_, err = r.Get(context.Background(), "arn:other")
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
		_, err := Load(path)
		if err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestBasicAuth(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.json")
	os.WriteFile(path, []byte(`{"a":{"username":"guest","password":"hunter2"},"b":{"password":"x"}}`), 0o600)
	r, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if u, p, err := r.BasicAuth(context.Background(), "a"); err != nil || u != "guest" || p != "hunter2" {
		t.Fatalf("%q %q %v", u, p, err)
	}
	if _, _, err := r.BasicAuth(context.Background(), "b"); err == nil || !strings.Contains(err.Error(), "has no username") {
		t.Errorf("secret without a username: %v", err)
	}
	if _, _, err := r.BasicAuth(context.Background(), "c"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown secret: %v", err)
	}
}
