// Package secrets resolves the secrets event source mappings name by ARN in
// SourceAccessConfigurations (BASIC_AUTH, SASL_SCRAM_*_AUTH,
// CLIENT_CERTIFICATE_TLS_AUTH, SERVER_ROOT_CA_CERTIFICATE): from a local
// file given with --secrets-file, else from AWS Secrets Manager through the
// SDK. A secret's values never appear in errors or logs.
package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

// ErrNotFound is returned when no source knows the secret.
var ErrNotFound = errors.New("secret not found")

// Secret is a secret's JSON object: {"username","password"} for
// credentials; "certificate", "privateKey", "privateKeyPassword" for mTLS;
// "certificate" for a root CA (the fields AWS documents for each type).
type Secret map[string]string

// Username and Password are the credential fields.
func (s Secret) Username() string { return s["username"] }
func (s Secret) Password() string { return s["password"] }

// String hides the values, so a Secret printed by mistake leaks nothing.
func (s Secret) String() string { return fmt.Sprintf("secret(%d fields)", len(s)) }

// GoString hides the values from %#v too.
func (s Secret) GoString() string { return s.String() }

// Resolver looks secrets up. The zero value knows no secrets.
type Resolver struct {
	file map[string]Secret
	sm   *secretsmanager.Client
	mu   sync.Mutex
	seen map[string]Secret
}

// Load reads a secrets file: a JSON object from secret ARN to the secret's
// object. path "" means no file.
func Load(path string) (*Resolver, error) {
	r := &Resolver{seen: map[string]Secret{}}
	if path == "" {
		return r, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("secrets file: %w", err)
	}
	var raw map[string]map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		// The decoder's message may quote the file; keep only its kind.
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("secrets file %s: invalid JSON at offset %d", path, se.Offset)
		}
		return nil, fmt.Errorf("secrets file %s: must be a JSON object from secret ARN to an object of strings", path)
	}
	r.file = make(map[string]Secret, len(raw))
	for arn, fields := range raw {
		s := Secret{}
		for k, v := range fields {
			str, ok := v.(string)
			if !ok {
				return nil, fmt.Errorf("secrets file %s: secret %s: field %q is not a string", path, arn, k)
			}
			s[k] = str
		}
		r.file[arn] = s
	}
	return r, nil
}

// WithSecretsManager makes the resolver ask AWS Secrets Manager for
// secrets the file does not have.
func (r *Resolver) WithSecretsManager(cfg aws.Config) *Resolver {
	r.sm = secretsmanager.NewFromConfig(cfg)
	return r
}

// BasicAuth returns the username and password of a BASIC_AUTH secret (the
// SourceAccessConfigurations type every broker and cluster source uses); a
// secret without a username is an error.
func (r *Resolver) BasicAuth(ctx context.Context, arn string) (username, password string, err error) {
	s, err := r.Get(ctx, arn)
	if err != nil {
		return "", "", err
	}
	if s.Username() == "" {
		return "", "", fmt.Errorf("secret %s has no username", arn)
	}
	return s.Username(), s.Password(), nil
}

// Get returns the secret named by arn.
func (r *Resolver) Get(ctx context.Context, arn string) (Secret, error) {
	if s, ok := r.file[arn]; ok {
		return s, nil
	}
	r.mu.Lock()
	s, ok := r.seen[arn]
	r.mu.Unlock()
	if ok {
		return s, nil
	}
	if r.sm == nil {
		return nil, fmt.Errorf("%w: %s (add it to --secrets-file)", ErrNotFound, arn)
	}
	out, err := r.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: &arn})
	if err != nil {
		return nil, fmt.Errorf("secrets manager: get %s: %w", arn, err)
	}
	s = Secret{}
	if err := json.Unmarshal([]byte(aws.ToString(out.SecretString)), &s); err != nil {
		return nil, fmt.Errorf("secret %s is not a JSON object of strings", arn)
	}
	r.mu.Lock()
	r.seen[arn] = s
	r.mu.Unlock()
	return s, nil
}
