package kafka

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	kafkasvc "github.com/aws/aws-sdk-go-v2/service/kafka"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/secrets"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/source"
)

// pki is a throwaway CA with a server certificate for 127.0.0.1 and a
// client certificate, PEM encoded.
type pki struct {
	caPEM                []byte
	server               tls.Certificate
	clientPEM, clientKey []byte
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey := key()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "esmd test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, usage x509.ExtKeyUsage) ([]byte, []byte) {
		k := key()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "127.0.0.1"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			KeyUsage: x509.KeyUsageDigitalSignature}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kb, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})
	}
	p := &pki{caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})}
	sc, sk := leaf(2, x509.ExtKeyUsageServerAuth)
	if p.server, err = tls.X509KeyPair(sc, sk); err != nil {
		t.Fatal(err)
	}
	p.clientPEM, p.clientKey = leaf(3, x509.ExtKeyUsageClientAuth)
	return p
}

// secretsFile writes a --secrets-file and loads it.
func secretsFile(t testing.TB, m map[string]map[string]string) *secrets.Resolver {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "secrets.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := secrets.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func sac(typ, uri string) esm.SourceAccessConfiguration {
	return esm.SourceAccessConfiguration{Type: ptr(typ), URI: ptr(uri)}
}

// smk returns a self-managed Kafka mapping of one topic.
func smk(seeds []string, topic string, sacs ...esm.SourceAccessConfiguration) *esm.Mapping {
	return &esm.Mapping{UUID: "uuid-" + topic, Source: esm.SourceKafka, Config: esm.Config{
		Topics: []string{topic}, StartingPosition: ptr("TRIM_HORIZON"),
		SelfManagedEventSource:     &esm.SelfManagedEventSource{Endpoints: map[string][]string{"KAFKA_BOOTSTRAP_SERVERS": seeds}},
		SourceAccessConfigurations: sacs,
	}}
}

// TestSASL connects through ConfigFor with each SASL mechanism AWS offers
// for Kafka, over TLS with the server's private CA (SASL_SSL, as AWS
// requires), to a kfake cluster with those users; a wrong password fails
// at Open without the password in the error.
func TestSASL(t *testing.T) {
	testenv.Skip(t)
	pk := newPKI(t)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(),
		kfake.Superuser("PLAIN", "plain-user", "plain-pw"),
		kfake.Superuser("SCRAM-SHA-256", "scram256-user", "scram256-pw"),
		kfake.Superuser("SCRAM-SHA-512", "scram512-user", "scram512-pw"),
		kfake.TLS(&tls.Config{Certificates: []tls.Certificate{pk.server}, MinVersion: tls.VersionTLS12}),
		kfake.SeedTopics(1, "auth"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	seeds := c.ListenAddrs()
	const arn = "arn:aws:secretsmanager:us-east-1:000000000000:secret:"
	sec := secretsFile(t, map[string]map[string]string{
		arn + "plain":    {"username": "plain-user", "password": "plain-pw"},
		arn + "scram256": {"username": "scram256-user", "password": "scram256-pw"},
		arn + "scram512": {"username": "scram512-user", "password": "scram512-pw"},
		arn + "wrong":    {"username": "scram512-user", "password": "not-the-password"},
		arn + "ca":       {"certificate": string(pk.caPEM)},
	})
	caCfg := &tls.Config{RootCAs: x509.NewCertPool(), MinVersion: tls.VersionTLS12}
	caCfg.RootCAs.AppendCertsFromPEM(pk.caPEM)
	prod := client(t, seeds, kgo.DefaultProduceTopic("auth"), kgo.DialTLSConfig(caCfg),
		kgo.SASL(saslMechanism(sacScram512, "scram512-user", "scram512-pw")))
	produce(t, prod, &kgo.Record{Value: []byte("hello")})

	for _, tc := range []struct{ typ, secret string }{
		{"BASIC_AUTH", "plain"}, {"SASL_SCRAM_256_AUTH", "scram256"}, {"SASL_SCRAM_512_AUTH", "scram512"},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			m := smk(seeds, "auth", sac(tc.typ, arn+tc.secret), sac("SERVER_ROOT_CA_CERTIFICATE", arn+"ca"),
				sac("VPC_SUBNET", "subnet:subnet-1"), sac("VPC_SECURITY_GROUP", "security_group:sg-1"))
			m.UUID = "group-" + tc.secret
			cfg, err := ConfigFor(context.Background(), m, Env{Secrets: sec})
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Group != m.UUID {
				t.Errorf("group %q, want the UUID", cfg.Group)
			}
			p := open(t, cfg)
			defer p.Close()
			if r := pollN(t, p, 1, 20*time.Second); string(decode(t, r[0]).Value) != "hello" {
				t.Fatalf("got %s", r[0].Bytes())
			}
			// The kafka:// destination client of the same mapping.
			dest, err := NewProducer(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer dest.Close()
			produce(t, dest, &kgo.Record{Topic: "auth", Value: []byte("from " + tc.typ)})
		})
	}
	t.Run("WrongPassword", func(t *testing.T) {
		m := smk(seeds, "auth", sac("SASL_SCRAM_512_AUTH", arn+"wrong"), sac("SERVER_ROOT_CA_CERTIFICATE", arn+"ca"))
		cfg, err := ConfigFor(context.Background(), m, Env{Secrets: sec})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		p, err := New(ctx, cfg)
		if err == nil {
			p.Close()
			t.Fatal("connected with a wrong password")
		}
		if strings.Contains(err.Error(), "not-the-password") {
			t.Fatalf("error leaks the password: %v", err)
		}
	})
	t.Run("UntrustedServer", func(t *testing.T) {
		// Without the private CA the server's certificate is refused.
		m := smk(seeds, "auth", sac("SASL_SCRAM_512_AUTH", arn+"scram512"))
		cfg, err := ConfigFor(context.Background(), m, Env{Secrets: sec})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if p, err := New(ctx, cfg); err == nil {
			p.Close()
			t.Fatal("connected to a server signed by an unknown CA")
		}
	})
}

// TestClientCertificate connects with mTLS (CLIENT_CERTIFICATE_TLS_AUTH)
// to a kfake cluster that requires a client certificate from its CA.
func TestClientCertificate(t *testing.T) {
	testenv.Skip(t)
	pk := newPKI(t)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pk.caPEM)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "mtls"),
		kfake.TLS(&tls.Config{Certificates: []tls.Certificate{pk.server}, ClientCAs: pool,
			ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	seeds := c.ListenAddrs()
	const arn = "arn:aws:secretsmanager:us-east-1:000000000000:secret:"
	sec := secretsFile(t, map[string]map[string]string{
		arn + "client": {"certificate": string(pk.clientPEM), "privateKey": string(pk.clientKey)},
		arn + "ca":     {"certificate": string(pk.caPEM)},
	})
	m := smk(seeds, "mtls", sac("CLIENT_CERTIFICATE_TLS_AUTH", arn+"client"), sac("SERVER_ROOT_CA_CERTIFICATE", arn+"ca"))
	cfg, err := ConfigFor(context.Background(), m, Env{Secrets: sec})
	if err != nil {
		t.Fatal(err)
	}
	prod := client(t, seeds, kgo.DefaultProduceTopic("mtls"), kgo.DialTLSConfig(cfg.TLS.Clone()))
	produce(t, prod, &kgo.Record{Value: []byte("mutual")})
	p := open(t, cfg)
	defer p.Close()
	if r := pollN(t, p, 1, 20*time.Second); string(decode(t, r[0]).Value) != "mutual" {
		t.Fatalf("got %s", r[0].Bytes())
	}

	// Without the client certificate the server refuses the connection.
	m = smk(seeds, "mtls", sac("SERVER_ROOT_CA_CERTIFICATE", arn+"ca"))
	cfg, err = ConfigFor(context.Background(), m, Env{Secrets: sec})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if p, err := New(ctx, cfg); err == nil {
		p.Close()
		t.Fatal("connected without a client certificate")
	}
}

// TestConfigFor covers the mapping fields ConfigFor reads.
func TestConfigFor(t *testing.T) {
	msk := &esm.Mapping{UUID: "u-1", Source: esm.SourceMSK, Config: esm.Config{
		EventSourceArn: ptr("arn:aws:kafka:us-east-1:000000000000:cluster/demo/abc"), Topics: []string{"t"},
		StartingPosition: ptr("AT_TIMESTAMP"), StartingPositionTimestamp: ptr(1700000000.5),
		AmazonManagedKafkaEventSourceConfig: &esm.KafkaEventSourceConfig{ConsumerGroupId: ptr("my-group")},
	}}
	if _, err := ConfigFor(context.Background(), msk, Env{}); err == nil || !strings.Contains(err.Error(), "--msk-cluster") {
		t.Fatalf("unknown MSK cluster: %v", err)
	}
	clusters, err := ParseClusters([]string{"arn:aws:kafka:us-east-1:000000000000:cluster/demo/abc=127.0.0.1:9092, 127.0.0.1:9093"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ConfigFor(context.Background(), msk, Env{Clusters: clusters})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.Seeds, ",") != "127.0.0.1:9092,127.0.0.1:9093" || cfg.Group != "my-group" || cfg.StartingPosition != AtTimestamp ||
		cfg.StartingTimestamp.UnixMilli() != 1700000000500 || cfg.TLS != nil || cfg.SASL != nil {
		t.Fatalf("config %+v", cfg)
	}
	for _, bad := range []string{"nope", "arn:aws:kafka:x=", "host:9092"} {
		if _, err := ParseClusters([]string{bad}); err == nil {
			t.Errorf("ParseClusters(%q) accepted", bad)
		}
	}
	m := smk([]string{"127.0.0.1:1"}, "t", sac("BASIC_AUTH", "arn:missing"))
	if _, err := ConfigFor(context.Background(), m, Env{Secrets: secretsFile(t, map[string]map[string]string{})}); err == nil {
		t.Fatal("missing secret accepted")
	}
}

// fakeMSK answers GetBootstrapBrokers like MSK for a cluster with every
// listener (MSK itself cannot run here; the SDK's request is not at issue).
type fakeMSK struct{ calls int }

func (f *fakeMSK) GetBootstrapBrokers(_ context.Context, in *kafkasvc.GetBootstrapBrokersInput, _ ...func(*kafkasvc.Options)) (*kafkasvc.GetBootstrapBrokersOutput, error) {
	f.calls++
	return &kafkasvc.GetBootstrapBrokersOutput{
		BootstrapBrokerString:          ptr("b-1:9092,b-2:9092"),
		BootstrapBrokerStringTls:       ptr("b-1:9094,b-2:9094"),
		BootstrapBrokerStringSaslScram: ptr("b-1:9096,b-2:9096"),
		BootstrapBrokerStringSaslIam:   ptr("b-1:9098,b-2:9098"),
	}, nil
}

// TestMSKBrokerLookup picks the MSK listener by the mapping's
// authentication (mTLS > SCRAM > IAM > TLS, KAF-18), and --msk-cluster
// wins over the lookup.
func TestMSKBrokerLookup(t *testing.T) {
	pk := newPKI(t)
	const arn = "arn:aws:secretsmanager:us-east-1:000000000000:secret:"
	sec := secretsFile(t, map[string]map[string]string{
		arn + "scram":  {"username": "u", "password": "p"},
		arn + "client": {"certificate": string(pk.clientPEM), "privateKey": string(pk.clientKey)},
	})
	cluster := "arn:aws:kafka:us-east-1:000000000000:cluster/demo/abc"
	mapping := func(sacs ...esm.SourceAccessConfiguration) *esm.Mapping {
		return &esm.Mapping{UUID: "u", Source: esm.SourceMSK, Config: esm.Config{EventSourceArn: ptr(cluster), Topics: []string{"t"},
			SourceAccessConfigurations: sacs}}
	}
	creds := credentials.NewStaticCredentialsProvider("AKID", "SECRET", "")
	for _, tc := range []struct {
		name  string
		m     *esm.Mapping
		seeds string
		sasl  string
	}{
		{"mTLS", mapping(sac("CLIENT_CERTIFICATE_TLS_AUTH", arn+"client")), "b-1:9094,b-2:9094", ""},
		{"SCRAM", mapping(sac("SASL_SCRAM_512_AUTH", arn+"scram")), "b-1:9096,b-2:9096", "SCRAM-SHA-512"},
		{"IAM", mapping(), "b-1:9098,b-2:9098", "AWS_MSK_IAM"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ConfigFor(context.Background(), tc.m, Env{Secrets: sec, MSK: &fakeMSK{}, Credentials: creds})
			if err != nil {
				t.Fatal(err)
			}
			name := ""
			if cfg.SASL != nil {
				name = cfg.SASL.Name()
			}
			if strings.Join(cfg.Seeds, ",") != tc.seeds || name != tc.sasl || cfg.TLS == nil {
				t.Fatalf("seeds %v, SASL %q, TLS %v", cfg.Seeds, name, cfg.TLS != nil)
			}
		})
	}
	f := &fakeMSK{}
	cfg, err := ConfigFor(context.Background(), mapping(), Env{MSK: f, Clusters: map[string][]string{cluster: {"127.0.0.1:9092"}}})
	if err != nil || f.calls != 0 || cfg.Seeds[0] != "127.0.0.1:9092" || cfg.TLS != nil {
		t.Fatalf("--msk-cluster: %v, %d lookups, %+v", err, f.calls, cfg)
	}
}

// TestNotAuthorized: a user the cluster knows but whose ACLs do not allow
// the group makes Poll fail instead of retrying forever.
func TestNotAuthorized(t *testing.T) {
	testenv.Skip(t)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.EnableACLs(),
		kfake.Superuser("PLAIN", "admin", "admin"),
		kfake.User("PLAIN", "reader", "pw", kfake.ACL{Resource: kmsg.ACLResourceTypeTopic, Name: "acl",
			Pattern: kmsg.ACLResourcePatternTypeLiteral, Operation: kmsg.ACLOperationAll, Allow: true}),
		kfake.SeedTopics(1, "acl"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	p := open(t, Config{Seeds: c.ListenAddrs(), Topics: []string{"acl"}, Group: "no-acl-for-this-group",
		SASL: saslMechanism(sacBasicAuth, "reader", "pw")})
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = p.Poll(ctx)
	if !errors.Is(err, kerr.GroupAuthorizationFailed) {
		t.Fatalf("poll: %v, want GROUP_AUTHORIZATION_FAILED", err)
	}
}

// TestDisabling: errors retrying cannot fix disable the mapping with
// Lambda's reasons; others are retried. (kfake closes the connection on a
// refused SCRAM login instead of answering SASL_AUTHENTICATION_FAILED, so
// the brokers' error codes are checked here rather than end to end.)
func TestDisabling(t *testing.T) {
	for _, tc := range []struct {
		err    error
		reason string
		shown  string // what LastProcessingResult shows after "PROBLEM: " (AWS's phrases)
	}{
		{fmt.Errorf("connect: %w", kerr.SaslAuthenticationFailed), ReasonAuthN, "SASL authentication failed"},
		{fmt.Errorf("t: %w", kerr.TopicAuthorizationFailed), ReasonAuthZ, "Cluster failed to authorize Lambda"},
		{kerr.GroupAuthorizationFailed, ReasonAuthZ, "Cluster failed to authorize Lambda"},
		{kerr.ClusterAuthorizationFailed, ReasonAuthZ, "Cluster failed to authorize Lambda"},
		{kerr.NotLeaderForPartition, "", kerr.NotLeaderForPartition.Error()},
		{errors.New("EOF"), "", "EOF"},
	} {
		err := disabling(tc.err)
		var de *esm.DisableError
		if got := errors.As(err, &de); got != (tc.reason != "") || got && (de.Reason != tc.reason || !errors.Is(err, tc.err)) {
			t.Errorf("disabling(%v) = %#v, want reason %q", tc.err, err, tc.reason)
		}
		if shown, _ := source.Shown(err); shown.Error() != tc.shown {
			t.Errorf("disabling(%v) shows %q, want %q", tc.err, shown, tc.shown)
		}
		// A failed connection check: refusals as above, anything else
		// AWS's connection phrase.
		want := tc.shown
		if tc.reason == "" {
			want = source.PhraseConnection
		}
		if shown, _ := source.Shown(connectError(tc.err)); shown.Error() != want {
			t.Errorf("connectError(%v) shows %q, want %q", tc.err, shown, want)
		}
	}
}
