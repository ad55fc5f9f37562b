package kafka

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kafka"
	awssasl "github.com/twmb/franz-go/pkg/sasl/aws"
)

// MSK is the part of the Amazon MSK API the poller uses;
// *kafka.Client implements it.
type MSK interface {
	GetBootstrapBrokers(ctx context.Context, in *kafka.GetBootstrapBrokersInput, optFns ...func(*kafka.Options)) (*kafka.GetBootstrapBrokersOutput, error)
}

// mskBrokers resolves an MSK cluster through GetBootstrapBrokers and picks
// the listener AWS would use for the mapping's authentication, in the
// documented order: mTLS, SASL/SCRAM, SASL/IAM (when the mapping names no
// secret), unauthenticated TLS, plaintext (spec KAF-18). Private listeners
// win over public ones, as the ESM runs in the cluster's VPC.
func mskBrokers(ctx context.Context, env Env, arn string, cfg *Config, clientCert, sasl bool) error {
	out, err := env.MSK.GetBootstrapBrokers(ctx, &kafka.GetBootstrapBrokersInput{ClusterArn: aws.String(arn)})
	if err != nil {
		return fmt.Errorf("MSK cluster %s: GetBootstrapBrokers: %w", arn, err)
	}
	pick := func(ss ...*string) []string {
		for _, s := range ss {
			if v := aws.ToString(s); v != "" {
				return strings.Split(v, ",")
			}
		}
		return nil
	}
	switch {
	case clientCert:
		cfg.Seeds = pick(out.BootstrapBrokerStringTls, out.BootstrapBrokerStringPublicTls)
	case sasl:
		cfg.Seeds = pick(out.BootstrapBrokerStringSaslScram, out.BootstrapBrokerStringPublicSaslScram)
	default:
		if iam := pick(out.BootstrapBrokerStringSaslIam, out.BootstrapBrokerStringPublicSaslIam); len(iam) > 0 && env.Credentials != nil {
			cfg.Seeds = iam
			cfg.SASL = awssasl.ManagedStreamingIAM(func(ctx context.Context) (awssasl.Auth, error) {
				c, err := env.Credentials.Retrieve(ctx)
				if err != nil {
					return awssasl.Auth{}, fmt.Errorf("MSK IAM credentials: %w", err)
				}
				return awssasl.Auth{AccessKey: c.AccessKeyID, SecretKey: c.SecretAccessKey, SessionToken: c.SessionToken}, nil
			})
		} else if tlsSeeds := pick(out.BootstrapBrokerStringTls, out.BootstrapBrokerStringPublicTls); len(tlsSeeds) > 0 {
			cfg.Seeds = tlsSeeds
		} else {
			cfg.Seeds = pick(out.BootstrapBrokerString)
			return nil // plaintext
		}
	}
	if len(cfg.Seeds) == 0 {
		return fmt.Errorf("MSK cluster %s has no listener for the mapping's authentication", arn)
	}
	if cfg.TLS == nil {
		cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return nil
}
