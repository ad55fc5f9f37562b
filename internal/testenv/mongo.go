package testenv

import (
	"testing"

	"github.com/esmd/esmd/internal/mongotest"
)

// Credentials of the server Mongo(t) starts (a user in the admin database,
// as DocumentDB's BASIC_AUTH secrets name one).
const (
	MongoUser     = "esmd"
	MongoPassword = "esmd-secret"
)

var mongoServer once[*mongotest.Server]

// Mongo returns an in-process mongotest server shared by the test package:
// a MongoDB wire-protocol one-node replica set "rs0" on 127.0.0.1 with
// change streams, requiring SCRAM authentication as MongoUser with
// MongoPassword (Server.UserURI(MongoUser, MongoPassword) is a connection
// string with them). It keeps every change event. Main stops it.
//
// It is not DocumentDB (see the mongotest package documentation). Because
// it is shared, tests must not change its credentials, fail points or
// history; a test that needs those starts its own with mongotest.Start and
// closes it.
func Mongo(t testing.TB) *mongotest.Server {
	t.Helper()
	return mongoServer.get(t, func() (*mongotest.Server, error) {
		s, err := mongotest.Start(mongotest.Options{Username: MongoUser, Password: MongoPassword})
		if err != nil {
			return nil, err
		}
		register(func() { _ = s.Close() })
		return s, nil
	})
}
