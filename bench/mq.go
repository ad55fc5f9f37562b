package bench

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/esmd/esmd/esm"
)

// The Amazon MQ broker and secret the bench's mappings name: esmd finds
// the broker with --mq-broker and the credentials in --secrets-file, both
// written by the bench.
const (
	mqBrokerARN = "arn:aws:mq:us-east-1:000000000000:broker:esmd-bench:b-0e5d0000-0000-4000-8000-00000000be9c"
	mqSecretARN = "arn:aws:secretsmanager:us-east-1:000000000000:secret:esmd-bench-mq"
)

// brokerURL is a broker URL with credentials: amqp://user:pass@host:port/vhost
// or stomp://user:pass@host:port.
type brokerURL struct {
	scheme, host, user, pass, vhost string
}

func parseBrokerURL(raw string, schemes ...string) (*brokerURL, error) {
	if raw == "" {
		return nil, fmt.Errorf("--broker is required: %s://user:password@host:port", schemes[0])
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("--broker: %w", err)
	}
	ok := false
	for _, s := range schemes {
		ok = ok || u.Scheme == s
	}
	if !ok || u.Host == "" {
		return nil, fmt.Errorf("--broker must be %s://user:password@host:port, not %q", strings.Join(schemes, " or "), u.Redacted())
	}
	b := &brokerURL{scheme: u.Scheme, host: u.Host, user: u.User.Username(), vhost: "/"}
	b.pass, _ = u.User.Password()
	if v := strings.TrimPrefix(u.Path, "/"); v != "" {
		b.vhost = v
	}
	return b, nil
}

// esmdFlags writes the secrets file with the broker's credentials into
// dir and returns the flags that point esmd at the broker.
func (b *brokerURL) esmdFlags(dir string, endpoint string) ([]string, error) {
	js, err := json.Marshal(map[string]map[string]string{mqSecretARN: {"username": b.user, "password": b.pass}})
	if err != nil {
		return nil, err
	}
	file := filepath.Join(dir, "secrets.json")
	if err := os.WriteFile(file, js, 0o600); err != nil {
		return nil, err
	}
	return []string{"--mq-broker", mqBrokerARN + "=" + endpoint, "--secrets-file", file}, nil
}

// mqMapping is the mapping of queue on the bench's broker.
func (b *brokerURL) mqMapping(queue string) *esm.Config {
	m := &esm.Config{EventSourceArn: ptr(mqBrokerARN), Queues: []string{queue},
		SourceAccessConfigurations: []esm.SourceAccessConfiguration{{Type: ptr("BASIC_AUTH"), URI: ptr(mqSecretARN)}}}
	if b.vhost != "/" {
		m.SourceAccessConfigurations = append(m.SourceAccessConfigurations, esm.SourceAccessConfiguration{Type: ptr("VIRTUAL_HOST"), URI: ptr(b.vhost)})
	}
	return m
}

// flagger is a Target that needs flags of esmd run (written with files
// into dir).
type flagger interface {
	EsmdFlags(dir string) ([]string, error)
}
