package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"testing"
	"time"

	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/source"
)

// TestConnectionErrorsLookAlike: whatever listens (or not) at the bootstrap
// servers a mapping names, the error an API caller sees is AWS's one
// phrase, so LastProcessingResult cannot be used as a port scanner; the
// causes, which differ, stay in the detail for the log.
func TestConnectionErrorsLookAlike(t *testing.T) {
	t.Parallel()
	addrs := testenv.Unreachable(t)
	details := map[string]string{}
	for name, addr := range addrs {
		for _, tlsOn := range []bool{false, true} {
			cfg := Config{Seeds: []string{addr}, Topics: []string{"t"}, Group: "g"}
			if tlsOn {
				cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
				name += "+tls"
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			p, err := New(ctx, cfg)
			cancel()
			if err == nil {
				p.Close()
				t.Fatalf("%s: connected", name)
			}
			shown, detail := source.Shown(err)
			var pr *source.Problem
			if !errors.As(err, &pr) || shown.Error() != source.PhraseConnection || detail == nil {
				t.Errorf("%s: shown %q (detail %v), want %q", name, shown, detail, source.PhraseConnection)
				continue
			}
			details[name] = detail.Error()
		}
	}
	if details["closed"] == details["garbage"] {
		t.Errorf("the log detail does not tell the causes apart: %q", details["closed"])
	}
}
