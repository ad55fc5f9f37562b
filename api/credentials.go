package api

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// Credential is one access key esmd accepts signatures from.
type Credential struct {
	AccessKeyID     string
	SecretAccessKey string
	// SessionToken, when set, must be sent as X-Amz-Security-Token by
	// requests signed with this key.
	SessionToken string
}

// Credentials are the keys esmd accepts, by access key id.
type Credentials map[string]Credential

// IDs returns the access key ids, sorted (for logs: never the secrets).
func (c Credentials) IDs() []string {
	ids := make([]string, 0, len(c))
	for id := range c {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// maxCredentialsFile bounds the credentials file read.
const maxCredentialsFile = 1 << 20

// CredentialsFromEnv is the --api-credentials value that takes the one key
// from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN.
const CredentialsFromEnv = "env"

// LoadCredentials reads the keys --api-credentials names: "env" for the
// standard AWS variables (looked up with getenv), otherwise a file in the
// AWS shared-credentials format (see ParseCredentials). It warns through
// warn when the file can be read by other users.
func LoadCredentials(spec string, getenv func(string) string, warn func(msg string)) (Credentials, error) {
	if spec == CredentialsFromEnv {
		id, secret := getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY")
		if id == "" || secret == "" {
			return nil, errors.New("--api-credentials env: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must both be set")
		}
		return Credentials{id: {AccessKeyID: id, SecretAccessKey: secret, SessionToken: getenv("AWS_SESSION_TOKEN")}}, nil
	}
	f, err := os.Open(spec)
	if err != nil {
		return nil, fmt.Errorf("--api-credentials: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Mode().Perm()&0o077 != 0 && warn != nil {
		warn(fmt.Sprintf("API credentials file %s is readable by other users (mode %v): chmod 600 it", spec, st.Mode().Perm()))
	}
	data, err := io.ReadAll(io.LimitReader(f, maxCredentialsFile+1))
	if err != nil {
		return nil, fmt.Errorf("--api-credentials: %w", err)
	}
	if len(data) > maxCredentialsFile {
		return nil, fmt.Errorf("--api-credentials %s: larger than %d bytes", spec, maxCredentialsFile)
	}
	creds, err := ParseCredentials(data)
	if err != nil {
		return nil, fmt.Errorf("--api-credentials %s: %w", spec, err)
	}
	return creds, nil
}

// ParseCredentials parses the AWS shared-credentials INI format
// (~/.aws/credentials): sections, each with aws_access_key_id,
// aws_secret_access_key and optionally aws_session_token. Every section
// with a key id is one accepted key; comment lines start with # or ;.
// Other keys (region, output, ...) are ignored.
func ParseCredentials(data []byte) (Credentials, error) {
	type section struct {
		name string
		line int
		vals map[string]string
	}
	var sections []*section
	var cur *section
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxCredentialsFile)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
			continue
		case line[0] == '[':
			if !strings.HasSuffix(line, "]") {
				return nil, fmt.Errorf("line %d: section header without ']'", n)
			}
			cur = &section{name: strings.TrimSpace(line[1 : len(line)-1]), line: n, vals: map[string]string{}}
			sections = append(sections, cur)
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("line %d: expected key = value", n)
		}
		if cur == nil {
			return nil, fmt.Errorf("line %d: key outside a [section]", n)
		}
		cur.vals[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	creds := Credentials{}
	for _, s := range sections {
		id, secret := s.vals["aws_access_key_id"], s.vals["aws_secret_access_key"]
		if id == "" && secret == "" {
			continue
		}
		if id == "" || secret == "" {
			return nil, fmt.Errorf("[%s] (line %d): aws_access_key_id and aws_secret_access_key must both be set", s.name, s.line)
		}
		c := Credential{AccessKeyID: id, SecretAccessKey: secret, SessionToken: s.vals["aws_session_token"]}
		if prev, dup := creds[id]; dup && prev != c {
			return nil, fmt.Errorf("[%s] (line %d): access key %s appears twice with different secrets", s.name, s.line, id)
		}
		creds[id] = c
	}
	if len(creds) == 0 {
		return nil, errors.New("no aws_access_key_id / aws_secret_access_key pair")
	}
	return creds, nil
}
