package source

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/aws/smithy-go"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/secrets"
)

// Problem is a source error whose API text is a short fixed phrase, as AWS
// words LastProcessingResult ("Connection error. Please check your event
// source connection configuration."), while its detail (Err) goes to the
// log only. A dial error says what listens where: shown to whoever may
// create a mapping, it would make esmd a port scanner of every host:port
// they name. The pipeline shows Phrase and logs Err.
type Problem struct {
	Phrase string
	Err    error
}

func (p *Problem) Error() string { return p.Phrase }

// Unwrap returns the detail, so that callers still branch on the cause.
func (p *Problem) Unwrap() error { return p.Err }

// Phrases of LastProcessingResult (after "PROBLEM: ").
const (
	// PhraseConnection is what AWS shows when its poller cannot reach an
	// event source (observed on MSK mappings, pulumi/pulumi-aws#1290). esmd
	// shows it for every failure before the source's own protocol answers:
	// refused, timed out, unresolvable, reset, TLS handshake or certificate
	// failure, and a peer that does not speak the protocol.
	PhraseConnection = "Connection error. Please check your event source connection configuration."
	// PhraseSASL: the broker refused the credentials (AWS's Kafka
	// troubleshooting page: "SASL authentication failed").
	PhraseSASL = "SASL authentication failed"
	// PhraseAuthorize: the credentials lack an ACL (AWS: "Cluster failed to
	// authorize Lambda").
	PhraseAuthorize = "Cluster failed to authorize Lambda"
)

// ConnectionProblem returns err as a *Problem with PhraseConnection.
func ConnectionProblem(err error) error {
	if err == nil {
		return nil
	}
	return &Problem{Phrase: PhraseConnection, Err: err}
}

// AWSProblem classifies the error of an AWS SDK call of a poller: an
// answer of the service (an API error with its code: a queue or stream that
// does not exist, access denied) is returned as it is; anything else (no
// answer: refused, timed out, unresolvable, TLS; or an answer that is no
// AWS service's) is PhraseConnection, its detail (which names the
// endpoint) for the log only.
func AWSProblem(err error) error {
	if err == nil || errors.Is(err, context.Canceled) {
		return err
	}
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() != "" && ae.ErrorCode() != "UnknownError" {
		return err
	}
	return ConnectionProblem(err)
}

// Shown returns what of err an API caller may see, and the detail that goes
// to the log: a *Problem's Phrase (in an *esm.DisableError when err has
// one, so that the mapping is still disabled), or err itself.
func Shown(err error) (shown error, detail error) {
	var p *Problem
	if !errors.As(err, &p) {
		return err, nil
	}
	var de *esm.DisableError
	if errors.As(err, &de) {
		return &esm.DisableError{Reason: de.Reason, Err: errors.New(p.Phrase)}, p.Err
	}
	return errors.New(p.Phrase), p.Err
}

// ReasonConfig is the StateTransitionReason of a mapping disabled because
// its configuration cannot work (spec MQ-7: "The event source mapping
// configuration is not valid"), such as a secret its restriction does not
// allow for the mapping's endpoints.
const ReasonConfig = "ESM_CONFIG_NOT_VALID"

// SecretTarget returns the secrets of a mapping's SourceAccessConfigurations
// that may not be sent to t, as an *esm.Error (InvalidParameterValueException)
// naming the first such secret and the endpoint, never its values. A secret
// that cannot be looked up now (unknown, Secrets Manager unreachable) does
// not refuse the mapping: the poller reports it, and checks it again before
// it sends it (Resolver.Get).
func SecretTarget(ctx context.Context, env *Env, cfg *esm.Config, t secrets.Target) error {
	if env == nil || env.Secrets == nil {
		return nil
	}
	for _, sac := range cfg.SourceAccessConfigurations {
		if sac.Type == nil || sac.URI == nil || !secrets.IsSecretType(*sac.Type) {
			continue
		}
		err := env.Secrets.Allow(ctx, *sac.URI, t)
		var de *secrets.DeniedError
		if errors.As(err, &de) {
			why := fmt.Sprintf("it is not in the secret's %s", secrets.AllowedKey)
			if de.Unrestricted {
				why = fmt.Sprintf("the secret has no %s, which this esmd requires", secrets.AllowedKey)
			}
			return &esm.Error{Type: esm.ErrTypeInvalidParameterValue, Status: http.StatusBadRequest,
				Message: fmt.Sprintf("The secret %s may not be sent to %s: %s.", de.Secret, de.Endpoint, why)}
		}
	}
	return nil
}

// NamesSecrets says whether a mapping names any secret in its
// SourceAccessConfigurations.
func NamesSecrets(cfg *esm.Config) bool {
	for _, sac := range cfg.SourceAccessConfigurations {
		if sac.Type != nil && secrets.IsSecretType(*sac.Type) {
			return true
		}
	}
	return false
}

// Denied returns err as an *esm.DisableError (ReasonConfig) when it is a
// secret refused for the mapping's endpoints (secrets.ErrDenied): the
// second line of defence, at connect time, for a mapping stored before the
// restriction was written. Other errors are returned as they are.
func Denied(err error) error {
	if errors.Is(err, secrets.ErrDenied) {
		return &esm.DisableError{Reason: ReasonConfig, Err: err}
	}
	return err
}
