package awsconfig

import (
	"context"
	"testing"
)

// With an endpoint override and no credentials, Load must not probe
// instance metadata (which would reach beyond this machine): it uses static
// credentials.
func TestEmulatorCredentials(t *testing.T) {
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_LAMBDA"} {
		t.Setenv(k, "")
	}
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	for _, tc := range []struct {
		name  string
		local bool
		env   string
	}{{"flag", true, ""}, {"env", false, "http://127.0.0.1:1"}} {
		if EndpointOverridden() && tc.env == "" {
			t.Fatal("an empty AWS_ENDPOINT_URL counts as an override")
		}
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("AWS_ENDPOINT_URL", tc.env)
			cfg, err := Load(context.Background(), "eu-west-1", tc.local)
			if err != nil {
				t.Fatal(err)
			}
			creds, err := cfg.Credentials.Retrieve(context.Background())
			if err != nil || creds.AccessKeyID != "test" || cfg.Region != "eu-west-1" {
				t.Fatalf("creds %+v err %v region %s", creds, err, cfg.Region)
			}
		})
	}
}
