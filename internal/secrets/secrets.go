// Package secrets resolves the secrets event source mappings name by ARN in
// SourceAccessConfigurations (BASIC_AUTH, SASL_SCRAM_*_AUTH,
// CLIENT_CERTIFICATE_TLS_AUTH, SERVER_ROOT_CA_CERTIFICATE): from a local
// file given with --secrets-file, else from AWS Secrets Manager through the
// SDK. A secret's values never appear in errors or logs.
//
// A secret may be restricted to the endpoints, brokers or clusters it may be
// sent to (AllowedKey): a secret is only ever handed out for a Target, and
// one that its list does not name is refused with a *DeniedError.
package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
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
// AllowedKey is not one of its fields: the Resolver keeps it apart.
type Secret map[string]string

// Username and Password are the credential fields.
func (s Secret) Username() string { return s["username"] }
func (s Secret) Password() string { return s["password"] }

// String hides the values, so a Secret printed by mistake leaks nothing.
func (s Secret) String() string { return fmt.Sprintf("secret(%d fields)", len(s)) }

// GoString hides the values from %#v too.
func (s Secret) GoString() string { return s.String() }

// entry is a secret with its restriction (nil: none).
type entry struct {
	secret  Secret
	allowed *allowlist
}

// Resolver looks secrets up. The zero value knows no secrets.
type Resolver struct {
	file map[string]entry
	sm   *secretsmanager.Client
	log  *slog.Logger
	// require refuses secrets without AllowedKey (RequireRestriction).
	require bool
	mu      sync.Mutex
	seen    map[string]entry
}

// Load reads a secrets file: a JSON object from secret ARN to the secret's
// object of strings, which may also hold AllowedKey. path "" means no file.
// log, when not nil, is told about a file other users may read or write,
// and about secrets without a restriction.
func Load(path string, log *slog.Logger) (*Resolver, error) {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	r := &Resolver{seen: map[string]entry{}, log: log}
	if path == "" {
		return r, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("secrets file: %w", err)
	}
	if fi, err := os.Stat(path); err == nil {
		warnMode(log, path, fi.Mode())
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
	r.file = make(map[string]entry, len(raw))
	var open []string
	for arn, fields := range raw {
		e, err := parseEntry(fields)
		if err != nil {
			return nil, fmt.Errorf("secrets file %s: secret %s: %w", path, arn, err)
		}
		if e.allowed == nil {
			open = append(open, arn)
		}
		r.file[arn] = e
	}
	if len(open) > 0 {
		log.Info("secrets without "+AllowedKey+" may be sent to any endpoint a mapping names, unless --require-allowed-endpoints is given", "file", path, "secrets", open)
	}
	return r, nil
}

// warnMode warns about a secrets file that users other than esmd's may
// read (world-readable) or change (group- or world-writable).
func warnMode(log *slog.Logger, path string, mode os.FileMode) {
	perm := mode.Perm()
	switch {
	case perm&0o022 != 0:
		log.Warn("the secrets file is writable by other users: they can change the credentials esmd sends; chmod 600 it", "file", path, "mode", fmt.Sprintf("%04o", perm))
	case perm&0o004 != 0:
		log.Warn("the secrets file is readable by every user of this machine; chmod 600 it", "file", path, "mode", fmt.Sprintf("%04o", perm))
	}
}

// parseEntry reads one secret's fields: strings, and AllowedKey.
func parseEntry(fields map[string]any) (entry, error) {
	e := entry{secret: Secret{}}
	for k, v := range fields {
		if k == AllowedKey {
			a, err := parseAllowed(v)
			if err != nil {
				return entry{}, err
			}
			e.allowed = a
			continue
		}
		str, ok := v.(string)
		if !ok {
			return entry{}, fmt.Errorf("field %q is not a string", k)
		}
		e.secret[k] = str
	}
	return e, nil
}

// WithSecretsManager makes the resolver ask AWS Secrets Manager for
// secrets the file does not have.
func (r *Resolver) WithSecretsManager(cfg aws.Config) *Resolver {
	r.sm = secretsmanager.NewFromConfig(cfg)
	return r
}

// RequireRestriction makes the resolver refuse, with a *DeniedError, every
// secret without AllowedKey (--require-allowed-endpoints): a Secrets
// Manager secret written for something else (a database's, one RDS
// manages) can then never be sent to an endpoint an API caller names.
func (r *Resolver) RequireRestriction() *Resolver {
	r.require = true
	return r
}

// check returns nil when e may be sent to t.
func (r *Resolver) check(arn string, e entry, t Target) error {
	if e.allowed == nil && r.require {
		return denyUnrestricted(arn, t)
	}
	return e.allowed.check(arn, t)
}

// BasicAuth returns the username and password of a BASIC_AUTH secret (the
// SourceAccessConfigurations type every broker and cluster source uses) to
// be sent to t; a secret without a username is an error.
func (r *Resolver) BasicAuth(ctx context.Context, arn string, t Target) (username, password string, err error) {
	s, err := r.Get(ctx, arn, t)
	if err != nil {
		return "", "", err
	}
	if s.Username() == "" {
		return "", "", fmt.Errorf("secret %s has no username", arn)
	}
	return s.Username(), s.Password(), nil
}

// Get returns the secret named by arn, to be sent to t. A secret whose
// AllowedKey does not name t is refused with a *DeniedError.
func (r *Resolver) Get(ctx context.Context, arn string, t Target) (Secret, error) {
	e, err := r.lookup(ctx, arn)
	if err != nil {
		return nil, err
	}
	if err := r.check(arn, e, t); err != nil {
		return nil, err
	}
	return e.secret, nil
}

// Allow says whether the secret named by arn may be sent to t: nil, a
// *DeniedError, or the error of looking the secret up.
func (r *Resolver) Allow(ctx context.Context, arn string, t Target) error {
	e, err := r.lookup(ctx, arn)
	if err != nil {
		return err
	}
	return r.check(arn, e, t)
}

func (r *Resolver) lookup(ctx context.Context, arn string) (entry, error) {
	if e, ok := r.file[arn]; ok {
		return e, nil
	}
	r.mu.Lock()
	e, ok := r.seen[arn]
	r.mu.Unlock()
	if ok {
		return e, nil
	}
	if r.sm == nil {
		return entry{}, fmt.Errorf("%w: %s (add it to --secrets-file)", ErrNotFound, arn)
	}
	out, err := r.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: &arn})
	if err != nil {
		return entry{}, fmt.Errorf("secrets manager: get %s: %w", arn, err)
	}
	var fields map[string]any
	if err := json.Unmarshal([]byte(aws.ToString(out.SecretString)), &fields); err != nil {
		return entry{}, fmt.Errorf("secret %s is not a JSON object of strings", arn)
	}
	e, err = parseEntry(fields)
	if err != nil {
		return entry{}, fmt.Errorf("secret %s: %w", arn, err)
	}
	r.mu.Lock()
	if r.seen == nil {
		r.seen = map[string]entry{}
	}
	_, again := r.seen[arn]
	r.seen[arn] = e
	r.mu.Unlock()
	if e.allowed == nil && !again && r.log != nil && !r.require {
		r.log.Warn("a Secrets Manager secret without "+AllowedKey+" may be sent to any endpoint a mapping names (--require-allowed-endpoints refuses such secrets)", "secret", arn)
	}
	return e, nil
}
