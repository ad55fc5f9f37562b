// Package awsconfig loads the AWS SDK configuration every esmd component
// uses, from the SDK's standard sources (AWS_REGION, AWS_ENDPOINT_URL,
// AWS_ENDPOINT_URL_<SERVICE>, credentials, profiles), so that pointing esmd
// at an emulator or at AWS needs no esmd-specific settings.
package awsconfig

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// Load returns the SDK configuration for region. When no credentials are
// configured in the environment but an endpoint override is (an
// AWS_ENDPOINT_URL variable, or local set by a flag such as
// --lambda-endpoint), it uses static dummy credentials instead of probing
// instance metadata, since emulators accept any signature.
func Load(ctx context.Context, region string, local bool) (aws.Config, error) {
	opts := []func(*config.LoadOptions) error{config.WithRegion(region)}
	if !credentialsInEnv() && (local || EndpointOverridden()) {
		opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("test", "test", "")))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("awsconfig: load AWS SDK configuration: %w", err)
	}
	return cfg, nil
}

func credentialsInEnv() bool {
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"} {
		if os.Getenv(k) != "" {
			return true
		}
	}
	return false
}

// EndpointOverridden reports whether any AWS_ENDPOINT_URL variable is set.
func EndpointOverridden() bool {
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "AWS_ENDPOINT_URL") && v != "" {
			return true
		}
	}
	return false
}
