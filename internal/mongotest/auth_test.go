package mongotest_test

import (
	"errors"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/auth"

	"github.com/esmd/esmd/internal/mongotest"
	"github.com/esmd/esmd/internal/testenv"
)

// TestSCRAM: the right user and password work with either mechanism and
// with the driver's default negotiation (speculative SCRAM-SHA-256); a
// wrong one fails the way mongod fails it: the driver's authentication
// error, from code 18 AuthenticationFailed.
func TestSCRAM(t *testing.T) {
	const user, password = "lambda", "pä55:w@rd/ok" // non-ASCII, URI-special
	s := start(t, mongotest.Options{Username: user, Password: password})
	ctx := testCtx(t)

	for _, mech := range []string{"", "SCRAM-SHA-256", "SCRAM-SHA-1"} {
		t.Run("ok "+mech, func(t *testing.T) {
			cl := connect(t, s, options.Client().SetAuth(options.Credential{Username: user, Password: password, AuthMechanism: mech}))
			coll := cl.Database("d").Collection("c")
			cs := watch(t, ctx, coll, nil)
			mustInsert(t, ctx, coll, bson.D{{Key: "a", Value: 1}})
			next(t, ctx, cs)
		})
	}
	t.Run("ok uri", func(t *testing.T) {
		cl, err := mongo.Connect(options.Client().ApplyURI(s.UserURI(user, password)))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Disconnect(ctx)
		if err := cl.Ping(ctx, nil); err != nil {
			t.Fatal(err)
		}
	})

	for name, cred := range map[string]options.Credential{
		"wrong password":        {Username: user, Password: "nope"},
		"wrong password SHA-1":  {Username: user, Password: "nope", AuthMechanism: "SCRAM-SHA-1"},
		"unknown user":          {Username: "who", Password: password},
		"user in another db":    {Username: user, Password: password, AuthSource: "d"},
		"wrong password SHA256": {Username: user, Password: password + "x", AuthMechanism: "SCRAM-SHA-256"},
	} {
		t.Run(name, func(t *testing.T) {
			cl := connect(t, s, options.Client().SetAuth(cred))
			err := cl.Ping(ctx, nil)
			var authErr *auth.Error
			if !errors.As(err, &authErr) {
				t.Fatalf("Ping: %v (%T), want an *auth.Error", err, err)
			}
			t.Log(err)
			if !strings.Contains(err.Error(), "(AuthenticationFailed) Authentication failed.") {
				t.Errorf("error %q does not carry mongod's AuthenticationFailed", err)
			}
		})
	}

	t.Run("no credentials", func(t *testing.T) {
		cl := connect(t, s)
		if err := cl.Ping(ctx, nil); err != nil {
			t.Errorf("ping needs no authentication: %v", err)
		}
		_, err := cl.Database("d").Collection("c").InsertOne(ctx, bson.D{})
		if serverCode(err) != mongotest.CodeUnauthorized {
			t.Errorf("insert without authentication: %v, want code 13", err)
		}
	})

	t.Run("SetCredentials", func(t *testing.T) {
		s := start(t, mongotest.Options{})
		open := connect(t, s)
		if err := open.Ping(ctx, nil); err != nil {
			t.Fatal(err)
		}
		s.SetCredentials("new", "secret")
		if err := connect(t, s, options.Client().SetAuth(options.Credential{Username: "new", Password: "secret"})).Ping(ctx, nil); err != nil {
			t.Errorf("new credentials: %v", err)
		}
		var authErr *auth.Error
		if err := connect(t, s, options.Client().SetAuth(options.Credential{Username: "new", Password: "old"})).Ping(ctx, nil); !errors.As(err, &authErr) {
			t.Errorf("wrong password after SetCredentials: %v", err)
		}
	})
}

// TestTestenvMongo: the shared server of testenv.Mongo takes its
// documented credentials.
func TestTestenvMongo(t *testing.T) {
	s := testenv.Mongo(t)
	ctx := testCtx(t)
	cl, err := mongo.Connect(options.Client().ApplyURI(s.UserURI(testenv.MongoUser, testenv.MongoPassword)))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Disconnect(ctx)
	if _, err := cl.Database("d").Collection("c").InsertOne(ctx, bson.D{}); err != nil {
		t.Fatal(err)
	}
	if testenv.Mongo(t) != s {
		t.Error("a second server was started")
	}
}
