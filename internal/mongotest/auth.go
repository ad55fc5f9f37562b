package mongotest

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"hash"
	"strconv"
	"strings"

	"github.com/xdg-go/stringprep"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// SCRAM (RFC 5802 and 7677) as mongod speaks it over saslStart and
// saslContinue.

const (
	mechSHA1   = "SCRAM-SHA-1"
	mechSHA256 = "SCRAM-SHA-256"
	// scramIterations is the driver's minimum, kept low so tests do not
	// spend their time in PBKDF2 (mongod uses 10000 and 15000).
	scramIterations = 4096
	authDB          = "admin"
)

// scramKeys are what a server stores for one user and mechanism.
type scramKeys struct {
	hash      func() hash.Hash
	salt      []byte
	storedKey []byte
	serverKey []byte
}

// credential is the one user the server knows.
type credential struct {
	user string
	keys map[string]*scramKeys
}

func newCredential(user, password string) *credential {
	c := &credential{user: user, keys: map[string]*scramKeys{}}
	// SCRAM-SHA-1 hashes MongoDB's legacy digest; SCRAM-SHA-256 the
	// SASLprepped password (which fails only for prohibited characters;
	// then no SHA-256 login can succeed).
	digest := md5.Sum([]byte(user + ":mongo:" + password))
	c.keys[mechSHA1] = deriveKeys(sha1.New, hex.EncodeToString(digest[:]))
	if prepped, err := stringprep.SASLprep.Prepare(password); err == nil {
		c.keys[mechSHA256] = deriveKeys(sha256.New, prepped)
	}
	return c
}

func deriveKeys(h func() hash.Hash, password string) *scramKeys {
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	salted, err := pbkdf2.Key(h, password, salt, scramIterations, h().Size())
	if err != nil {
		panic("mongotest: pbkdf2: " + err.Error()) // only for invalid parameters
	}
	clientKey := hmacSum(h, salted, "Client Key")
	stored := h()
	stored.Write(clientKey)
	return &scramKeys{hash: h, salt: salt, storedKey: stored.Sum(nil), serverKey: hmacSum(h, salted, "Server Key")}
}

func hmacSum(h func() hash.Hash, key []byte, msg string) []byte {
	m := hmac.New(h, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// scramServer is one conversation on one connection.
type scramServer struct {
	keys            *scramKeys
	user            string
	clientFirstBare string
	serverFirst     string
	nonce           string
	skipEmpty       bool
	step            int // 1: waiting for client-final; 2: waiting for the empty last message
}

func errAuthFailed() error { return errorf(CodeAuthenticationFailed, "Authentication failed.") }

// authorized reports whether c may run commands that need a user.
func (s *Server) authorized(c *conn) bool {
	if c.authed {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cred == nil
}

// mechanismsFor answers hello's saslSupportedMechs: "<db>.<user>".
func (s *Server) mechanismsFor(userDB string) bson.A {
	db, user, ok := strings.Cut(userDB, ".")
	s.mu.Lock()
	defer s.mu.Unlock()
	if !ok || db != authDB || s.cred == nil || s.cred.user != user {
		return nil
	}
	mechs := bson.A{}
	for _, m := range []string{mechSHA1, mechSHA256} {
		if s.cred.keys[m] != nil {
			mechs = append(mechs, m)
		}
	}
	return mechs
}

func cmdSaslStart(s *Server, c *conn, req *request) (bson.D, error) {
	return c.saslStart(s, req.db, req.body)
}

// saslStart begins a conversation ({saslStart, mechanism, payload,
// options: {skipEmptyExchange}}) against the user database db.
func (c *conn) saslStart(s *Server, db string, cmd bson.Raw) (bson.D, error) {
	c.sasl = nil
	mech, _ := cmd.Lookup("mechanism").StringValueOK()
	if mech != mechSHA1 && mech != mechSHA256 {
		return nil, errorf(codeMechanismUnavailable, "Received authentication for mechanism %s which is unknown or not enabled", mech)
	}
	_, payload, ok := cmd.Lookup("payload").BinaryOK()
	if !ok {
		return nil, errorf(codeBadValue, "saslStart needs a binary payload")
	}
	// client-first-message: gs2-header "n,," then "n=<user>,r=<nonce>".
	msg := string(payload)
	bare, ok := strings.CutPrefix(msg, "n,,")
	if !ok {
		bare, ok = strings.CutPrefix(msg, "y,,")
	}
	if !ok {
		return nil, errorf(codeBadValue, "SCRAM: unsupported gs2 header (channel binding or authzid) in %q", msg)
	}
	attrs := scramAttrs(bare)
	user, nonce := unescapeSCRAM(attrs["n"]), attrs["r"]
	if user == "" || nonce == "" {
		return nil, errorf(codeBadValue, "SCRAM: malformed client-first-message")
	}
	s.mu.Lock()
	cred := s.cred
	s.mu.Unlock()
	if cred == nil || cred.user != user || db != authDB || cred.keys[mech] == nil {
		return nil, errAuthFailed()
	}
	keys := cred.keys[mech]
	snonce := make([]byte, 24)
	_, _ = rand.Read(snonce)
	nonce += base64.StdEncoding.EncodeToString(snonce)
	serverFirst := "r=" + nonce + ",s=" + base64.StdEncoding.EncodeToString(keys.salt) + ",i=" + strconv.Itoa(scramIterations)
	opts, _ := cmd.Lookup("options").DocumentOK()
	c.sasl = &scramServer{
		keys: keys, user: user, clientFirstBare: bare, serverFirst: serverFirst, nonce: nonce,
		skipEmpty: truthy(opts.Lookup("skipEmptyExchange")), step: 1,
	}
	return bson.D{
		{Key: "conversationId", Value: int32(1)},
		{Key: "done", Value: false},
		{Key: "payload", Value: bson.Binary{Data: []byte(serverFirst)}},
	}, nil
}

func cmdSaslContinue(s *Server, c *conn, req *request) (bson.D, error) {
	conv := c.sasl
	if conv == nil {
		return nil, errorf(codeBadValue, "No SASL session state found")
	}
	if id, ok := asInt(req.body.Lookup("conversationId")); !ok || id != 1 {
		c.sasl = nil
		return nil, errorf(codeBadValue, "Invalid conversationId")
	}
	_, payload, ok := req.body.Lookup("payload").BinaryOK()
	if !ok {
		c.sasl = nil
		return nil, errorf(codeBadValue, "saslContinue needs a binary payload")
	}
	reply := func(done bool, p string) bson.D {
		return bson.D{
			{Key: "conversationId", Value: int32(1)},
			{Key: "done", Value: done},
			{Key: "payload", Value: bson.Binary{Data: []byte(p)}},
		}
	}
	if conv.step == 2 { // the empty exchange, without skipEmptyExchange
		c.sasl = nil
		if len(payload) != 0 {
			return nil, errAuthFailed()
		}
		c.authed = true
		return reply(true, ""), nil
	}
	// client-final-message: "c=<gs2 b64>,r=<nonce>,p=<proof b64>".
	msg := string(payload)
	i := strings.LastIndex(msg, ",p=")
	if i < 0 {
		c.sasl = nil
		return nil, errAuthFailed()
	}
	withoutProof := msg[:i]
	attrs := scramAttrs(withoutProof)
	proof, err := base64.StdEncoding.DecodeString(msg[i+3:])
	if err != nil || attrs["r"] != conv.nonce || attrs["c"] != "biws" && attrs["c"] != "eSws" {
		c.sasl = nil
		return nil, errAuthFailed()
	}
	k := conv.keys
	authMessage := conv.clientFirstBare + "," + conv.serverFirst + "," + withoutProof
	clientSig := hmacSum(k.hash, k.storedKey, authMessage)
	if len(proof) != len(clientSig) {
		c.sasl = nil
		return nil, errAuthFailed()
	}
	clientKey := make([]byte, len(proof))
	subtle.XORBytes(clientKey, proof, clientSig)
	h := k.hash()
	h.Write(clientKey)
	if !hmac.Equal(h.Sum(nil), k.storedKey) {
		c.sasl = nil
		return nil, errAuthFailed()
	}
	serverFinal := "v=" + base64.StdEncoding.EncodeToString(hmacSum(k.hash, k.serverKey, authMessage))
	if conv.skipEmpty {
		c.sasl = nil
		c.authed = true
		return reply(true, serverFinal), nil
	}
	conv.step = 2
	return reply(false, serverFinal), nil
}

func cmdLogout(_ *Server, c *conn, _ *request) (bson.D, error) {
	c.authed, c.sasl = false, nil
	return bson.D{}, nil
}

// scramAttrs splits "a=1,b=2" into a map (values may contain '=').
func scramAttrs(s string) map[string]string {
	m := map[string]string{}
	for _, part := range strings.Split(s, ",") {
		if k, v, ok := strings.Cut(part, "="); ok && len(k) == 1 {
			if _, dup := m[k]; !dup {
				m[k] = v
			}
		}
	}
	return m
}

// unescapeSCRAM decodes a saslname: "=2C" is ',' and "=3D" is '='.
func unescapeSCRAM(s string) string {
	if !strings.Contains(s, "=") {
		return s
	}
	var b bytes.Buffer
	for i := 0; i < len(s); i++ {
		switch {
		case strings.HasPrefix(s[i:], "=2C"):
			b.WriteByte(',')
			i += 2
		case strings.HasPrefix(s[i:], "=3D"):
			b.WriteByte('=')
			i += 2
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}
