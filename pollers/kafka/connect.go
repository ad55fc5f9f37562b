package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/secrets"
	"github.com/esmd/esmd/source"
)

// Secrets resolves the secret ARNs of SourceAccessConfigurations;
// *secrets.Resolver implements it.
type Secrets interface {
	Get(ctx context.Context, arn string, to secrets.Target) (secrets.Secret, error)
}

// Env is what ConfigFor needs besides the mapping.
type Env struct {
	// Secrets resolves BASIC_AUTH, SASL_SCRAM_*_AUTH,
	// CLIENT_CERTIFICATE_TLS_AUTH and SERVER_ROOT_CA_CERTIFICATE secrets.
	Secrets Secrets
	// Clusters maps MSK cluster ARNs to their bootstrap brokers
	// (--msk-cluster ARN=host:port,host:port); they win over MSK.
	Clusters map[string][]string
	// MSK resolves other MSK cluster ARNs (GetBootstrapBrokers); nil
	// leaves them unknown.
	MSK MSK
	// Credentials sign MSK IAM authentication (AWS_MSK_IAM), used for an
	// MSK cluster resolved through MSK when the mapping names no secret.
	Credentials aws.CredentialsProvider
	// Log is the poller's logger.
	Log *slog.Logger
}

// ParseClusters parses --msk-cluster values, ARN=host:port[,host:port...].
func ParseClusters(values []string) (map[string][]string, error) {
	out := map[string][]string{}
	for _, v := range values {
		arn, hosts, ok := strings.Cut(v, "=")
		if !ok || !strings.HasPrefix(arn, "arn:") || hosts == "" {
			return nil, fmt.Errorf("--msk-cluster %q: want ARN=host:port[,host:port...]", v)
		}
		for _, h := range strings.Split(hosts, ",") {
			if h = strings.TrimSpace(h); h != "" {
				out[arn] = append(out[arn], h)
			}
		}
	}
	return out, nil
}

// Source access configuration types (spec KAF-18).
const (
	sacBasicAuth   = "BASIC_AUTH"
	sacScram256    = "SASL_SCRAM_256_AUTH"
	sacScram512    = "SASL_SCRAM_512_AUTH"
	sacClientCert  = "CLIENT_CERTIFICATE_TLS_AUTH"
	sacRootCA      = "SERVER_ROOT_CA_CERTIFICATE"
	sacVPCSubnet   = "VPC_SUBNET"
	sacVPCSecGroup = "VPC_SECURITY_GROUP"
)

// ConfigFor returns the poller configuration of a Kafka or MSK mapping.
//
// Connections follow AWS: SASL (PLAIN through BASIC_AUTH, SCRAM-SHA-256 or
// -512) and client certificates imply TLS (AWS supports no SASL_PLAINTEXT);
// SERVER_ROOT_CA_CERTIFICATE replaces the system roots; with none of them
// the connection is plaintext. VPC_SUBNET and VPC_SECURITY_GROUP are
// accepted and ignored: esmd has no VPC to join and dials the brokers.
func ConfigFor(ctx context.Context, m *esm.Mapping, env Env) (Config, error) {
	c := &m.Config
	cfg := Config{Topics: c.Topics, Log: env.Log, StartingPosition: TrimHorizon}
	mskLookup := false
	switch m.Source {
	case esm.SourceKafka:
		if s := c.SelfManagedEventSource; s != nil {
			cfg.Seeds = s.Endpoints["KAFKA_BOOTSTRAP_SERVERS"]
		}
		if k := c.SelfManagedKafkaEventSourceConfig; k != nil && k.ConsumerGroupId != nil {
			cfg.Group = *k.ConsumerGroupId
		}
	case esm.SourceMSK:
		arn := ""
		if c.EventSourceArn != nil {
			arn = *c.EventSourceArn
		}
		cfg.Seeds = env.Clusters[arn]
		if len(cfg.Seeds) == 0 && env.MSK == nil {
			return Config{}, fmt.Errorf("MSK cluster %s: bootstrap brokers unknown; run esmd with --msk-cluster %s=host:port[,host:port]", arn, arn)
		}
		mskLookup = len(cfg.Seeds) == 0
		if k := c.AmazonManagedKafkaEventSourceConfig; k != nil && k.ConsumerGroupId != nil {
			cfg.Group = *k.ConsumerGroupId
		}
	default:
		return Config{}, fmt.Errorf("kafka: mapping source %q is not Kafka", m.Source)
	}
	if cfg.Group == "" {
		// esm defaults ConsumerGroupId to the UUID; a mapping made
		// before that default still gets the group AWS documented.
		cfg.Group = m.UUID
	}
	if c.StartingPosition != nil {
		cfg.StartingPosition = *c.StartingPosition
	}
	// Records per partition in the pipeline: at least three batches (one
	// in flight, the next one complete, a margin for the hand-out that
	// follows a Done), and up to 1,000 records (20 batches at most) for
	// small batches, whose invocations are short: with three batches of
	// 100, partitions waited for the poll loop's refill and esmd ran at
	// about half the rate it reached with 1,000 (interleaved runs of
	// TestThroughput). A revocation waits for these records, so the bound
	// is also how many invocations a handover may wait for.
	batch := 100 // AWS's default BatchSize for Kafka
	if c.BatchSize != nil {
		batch = int(*c.BatchSize)
	}
	cfg.MaxOutstanding = max(3*batch, min(1000, 20*batch))
	// Provisioned mode: MaximumPollers bounds the partitions consumed at
	// once (Poller.rotate says why partitions); on-demand (no config, or
	// {}) leaves every partition running.
	if pp := c.ProvisionedPollerConfig; pp != nil && pp.MaximumPollers != nil {
		cfg.MaxPollers = int(*pp.MaximumPollers)
	}
	if c.StartingPositionTimestamp != nil {
		sec, frac := math.Modf(*c.StartingPositionTimestamp)
		cfg.StartingTimestamp = time.Unix(int64(sec), int64(frac*1e9))
	}
	sacs, err := secretConfigs(c)
	if err != nil {
		return Config{}, err
	}
	if mskLookup {
		if err := mskBrokers(ctx, env, deref(c.EventSourceArn), &cfg, sacs.clientCert, sacs.sasl); err != nil {
			return Config{}, err
		}
	}
	to := target(m.Source, c, cfg.Seeds)
	var (
		roots *x509.CertPool
		certs []tls.Certificate
	)
	for _, sac := range sacs.list {
		typ, uri := deref(sac.Type), deref(sac.URI)
		if env.Secrets == nil {
			return Config{}, fmt.Errorf("kafka: %s secret %s: no secrets resolver", typ, uri)
		}
		// The secret is handed out for these brokers only: a secret
		// restricted to other endpoints is refused here, before any
		// connection (the second line of defence after Access).
		sec, err := env.Secrets.Get(ctx, uri, to)
		if err != nil {
			return Config{}, source.Denied(fmt.Errorf("kafka: %s: %w", typ, err))
		}
		switch typ {
		case sacBasicAuth, sacScram256, sacScram512:
			if sec.Username() == "" || sec.Password() == "" {
				return Config{}, fmt.Errorf("kafka: %s secret %s: needs username and password", typ, uri)
			}
			cfg.SASL = saslMechanism(typ, sec.Username(), sec.Password())
		case sacClientCert:
			cert, err := clientCert(sec)
			if err != nil {
				return Config{}, fmt.Errorf("kafka: %s secret %s: %w", typ, uri, err)
			}
			certs = append(certs, cert)
		case sacRootCA:
			if roots == nil {
				roots = x509.NewCertPool()
			}
			if !roots.AppendCertsFromPEM([]byte(sec["certificate"])) {
				return Config{}, fmt.Errorf("kafka: %s secret %s: \"certificate\" holds no PEM certificate", typ, uri)
			}
		}
	}
	if len(sacs.list) > 0 {
		cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots, Certificates: certs}
	}
	return cfg, nil
}

// secretSACs are the SourceAccessConfigurations of a mapping that name
// secrets, and what they ask for.
type secretSACs struct {
	list             []esm.SourceAccessConfiguration
	sasl, clientCert bool
}

// secretConfigs returns the secrets a Kafka mapping names; any of them
// implies TLS.
func secretConfigs(c *esm.Config) (secretSACs, error) {
	var out secretSACs
	for _, sac := range c.SourceAccessConfigurations {
		switch typ := deref(sac.Type); typ {
		case sacVPCSubnet, sacVPCSecGroup:
			continue
		case sacBasicAuth, sacScram256, sacScram512:
			if out.sasl {
				return out, errors.New("kafka: more than one SASL SourceAccessConfiguration")
			}
			out.sasl = true
		case sacClientCert:
			out.clientCert = true
		case sacRootCA:
		default:
			return out, fmt.Errorf("kafka: SourceAccessConfigurations type %q is not supported", typ)
		}
		out.list = append(out.list, sac)
	}
	return out, nil
}

// target is where a Kafka mapping sends its secrets: the bootstrap
// brokers (port 9092 when they name none, as kgo assumes) and, for MSK, the
// cluster's ARN.
func target(src esm.Source, c *esm.Config, seeds []string) secrets.Target {
	t := secrets.Target{}
	if src == esm.SourceMSK {
		t.ARN = deref(c.EventSourceArn)
	}
	for _, s := range seeds {
		t.Endpoints = append(t.Endpoints, secrets.HostPort(strings.TrimSpace(s), "9092"))
	}
	return t
}

func saslMechanism(typ, user, pass string) sasl.Mechanism {
	switch typ {
	case sacScram256:
		return scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()
	case sacScram512:
		return scram.Auth{User: user, Pass: pass}.AsSha512Mechanism()
	}
	return plain.Auth{User: user, Pass: pass}.AsMechanism()
}

// clientCert reads an mTLS secret: "certificate" (PEM chain) and
// "privateKey" (PKCS#8 PEM). The errors name fields, never values.
func clientCert(sec secrets.Secret) (tls.Certificate, error) {
	certPEM, keyPEM := []byte(sec["certificate"]), []byte(sec["privateKey"])
	if len(certPEM) == 0 || len(keyPEM) == 0 {
		return tls.Certificate{}, errors.New(`needs "certificate" and "privateKey"`)
	}
	if b, _ := pem.Decode(keyPEM); b != nil && b.Type == "ENCRYPTED PRIVATE KEY" {
		// AWS accepts PBES1-encrypted keys with "privateKeyPassword"; the
		// standard library decrypts none of those schemes.
		return tls.Certificate{}, errors.New("encrypted private keys (privateKeyPassword) are not supported; store the key unencrypted")
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// X509KeyPair's errors describe the PEM structure, not its bytes.
		return tls.Certificate{}, fmt.Errorf("certificate and key: %w", err)
	}
	return cert, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// NewProducer returns a producing client for the cluster and
// authentication of cfg (not a group member): the client of a kafka://
// OnFailure destination, which AWS requires in the source's cluster
// (spec KAF-16). It checks the connection before returning; the caller
// closes it.
func NewProducer(ctx context.Context, cfg Config) (*kgo.Client, error) {
	if len(cfg.Seeds) == 0 {
		return nil, errors.New("kafka: no bootstrap servers")
	}
	opts := []kgo.Opt{kgo.SeedBrokers(cfg.Seeds...), kgo.WithLogger(kgo.BasicLogger(io.Discard, kgo.LogLevelNone, nil))}
	if cfg.TLS != nil {
		opts = append(opts, kgo.DialTLSConfig(cfg.TLS))
	}
	if cfg.SASL != nil {
		opts = append(opts, kgo.SASL(cfg.SASL))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka producer: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := cl.Ping(pctx); err != nil {
		cl.Close()
		return nil, connectError(fmt.Errorf("kafka: connect to %v: %w", cfg.Seeds, err))
	}
	return cl, nil
}
