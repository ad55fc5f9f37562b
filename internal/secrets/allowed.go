package secrets

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// AllowedKey is the field of a secret (in --secrets-file, or in a Secrets
// Manager secret's JSON) that restricts where esmd may send it: a list of
//
//   - "host:port": a broker or cluster endpoint, compared with the host the
//     mapping names as written (a name is not resolved; an IP matches only
//     an IP). The host may start with "*." to allow every name under a
//     domain ("*.example.com:9096"), or be "*"; the port may be "*".
//   - "arn:...": an event source ARN (an MSK cluster, an Amazon MQ broker, a
//     DocumentDB cluster), with "*" matching any run of characters. The
//     source's endpoints are then whatever esmd resolves for that ARN
//     (--msk-cluster, --mq-broker, --docdb-cluster, or AWS's describe
//     calls), which the operator, not the API caller, controls.
//
// The list is a JSON array of strings, or one string of comma-separated
// entries (Secrets Manager's console edits string values only). A secret
// without the field may be sent anywhere, as before the field existed.
const AllowedKey = "esmd:allowed-endpoints"

// Target is where a mapping would send a secret.
type Target struct {
	// ARN is the event source's ARN (MSK cluster, MQ broker, DocumentDB
	// cluster); "" for self-managed Kafka, whose endpoints the caller names.
	ARN string
	// Endpoints are the host:port addresses the poller connects to; empty
	// when they are not known yet (then only an ARN entry can allow it).
	Endpoints []string
}

// ErrDenied is wrapped by every *DeniedError.
var ErrDenied = errors.New("secret not allowed for this endpoint")

// DeniedError says that a secret may not be sent to an endpoint. It names
// the secret and the endpoint, never the secret's values.
type DeniedError struct {
	// Secret is the secret's ARN.
	Secret string
	// Endpoint is the first host:port of the target that the secret's
	// AllowedKey does not allow, or the target's ARN when its endpoints are
	// unknown.
	Endpoint string
	// Unrestricted says the secret has no AllowedKey, which the Resolver
	// requires (RequireRestriction).
	Unrestricted bool
}

func (e *DeniedError) Error() string {
	if e.Unrestricted {
		return fmt.Sprintf("the secret %s may not be sent to %s: it has no %s, which esmd requires (--require-allowed-endpoints)", e.Secret, e.Endpoint, AllowedKey)
	}
	return fmt.Sprintf("the secret %s may not be sent to %s: the endpoint is not in the secret's %s", e.Secret, e.Endpoint, AllowedKey)
}

// denyUnrestricted is the refusal of a secret without AllowedKey when one
// is required.
func denyUnrestricted(secret string, t Target) *DeniedError {
	ep := t.ARN
	if len(t.Endpoints) > 0 {
		ep = t.Endpoints[0]
	}
	return &DeniedError{Secret: secret, Endpoint: ep, Unrestricted: true}
}

// Unwrap makes errors.Is(err, ErrDenied) true.
func (e *DeniedError) Unwrap() error { return ErrDenied }

// allowlist is a parsed AllowedKey.
type allowlist struct {
	arns  []string // glob patterns
	hosts []hostPattern
}

type hostPattern struct {
	host string // lower case; "*", "*.suffix" or a name or IP
	port string // "*" or digits
}

// parseAllowed reads AllowedKey's value. The entries are no secret: errors
// quote them.
func parseAllowed(v any) (*allowlist, error) {
	var entries []string
	switch v := v.(type) {
	case string:
		entries = strings.Split(v, ",")
	case []any:
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("%s: every entry must be a string", AllowedKey)
			}
			entries = append(entries, s)
		}
	default:
		return nil, fmt.Errorf("%s: want a list of \"host:port\" or ARN strings", AllowedKey)
	}
	a := &allowlist{}
	for _, e := range entries {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		if strings.HasPrefix(e, "arn:") {
			a.arns = append(a.arns, e)
			continue
		}
		host, port, err := net.SplitHostPort(e)
		if err != nil || host == "" || port == "" {
			return nil, fmt.Errorf("%s: entry %q: want host:port or an ARN", AllowedKey, e)
		}
		if port != "*" {
			if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
				return nil, fmt.Errorf("%s: entry %q: the port must be a number or *", AllowedKey, e)
			}
		}
		if strings.Contains(strings.TrimPrefix(host, "*."), "*") {
			return nil, fmt.Errorf("%s: entry %q: \"*\" may only be the host or start it as \"*.\"", AllowedKey, e)
		}
		a.hosts = append(a.hosts, hostPattern{host: strings.ToLower(host), port: port})
	}
	// An empty list is a restriction to nowhere, not the absence of one.
	return a, nil
}

// check returns nil when a (nil: no restriction) allows t.
func (a *allowlist) check(secret string, t Target) error {
	if a == nil {
		return nil
	}
	if t.ARN != "" {
		for _, p := range a.arns {
			if glob(p, t.ARN) {
				return nil
			}
		}
	}
	if len(t.Endpoints) == 0 {
		return &DeniedError{Secret: secret, Endpoint: t.ARN}
	}
	for _, ep := range t.Endpoints {
		if !a.allowsHost(ep) {
			return &DeniedError{Secret: secret, Endpoint: ep}
		}
	}
	return nil
}

func (a *allowlist) allowsHost(endpoint string) bool {
	host, port, err := net.SplitHostPort(endpoint)
	if err != nil {
		return false
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, p := range a.hosts {
		if p.port != "*" && p.port != port {
			continue
		}
		switch {
		case p.host == "*", p.host == host:
			return true
		case strings.HasPrefix(p.host, "*.") && strings.HasSuffix(host, p.host[1:]) && len(host) > len(p.host)-1:
			return true
		}
	}
	return false
}

// glob matches s against pattern, where "*" matches any run of characters.
func glob(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return strings.HasSuffix(s, last)
}

// Secret types of SourceAccessConfigurations: the ones whose URI names a
// secret (the others name a virtual host, a subnet or a security group).
var secretTypes = map[string]bool{
	"BASIC_AUTH": true, "SASL_SCRAM_256_AUTH": true, "SASL_SCRAM_512_AUTH": true,
	"CLIENT_CERTIFICATE_TLS_AUTH": true, "SERVER_ROOT_CA_CERTIFICATE": true,
}

// IsSecretType says whether a SourceAccessConfigurations type names a
// secret.
func IsSecretType(typ string) bool { return secretTypes[typ] }

// HostPort returns the host:port of an address written "host",
// "host:port", "[v6]:port" or "scheme://host[:port]/...", with port
// defaultPort when it names none: the form Target.Endpoints holds.
func HostPort(addr, defaultPort string) string {
	if _, rest, ok := strings.Cut(addr, "://"); ok {
		addr = rest
	}
	if i := strings.LastIndexAny(addr, "@"); i >= 0 {
		addr = addr[i+1:]
	}
	if i := strings.IndexAny(addr, "/?#"); i >= 0 {
		addr = addr[:i]
	}
	if h, p, err := net.SplitHostPort(addr); err == nil {
		if p == "" {
			p = defaultPort
		}
		return net.JoinHostPort(h, p)
	}
	return net.JoinHostPort(strings.Trim(addr, "[]"), defaultPort)
}
