package mongotest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/esmd/esmd/internal/mongotest"
	"github.com/esmd/esmd/internal/testenv"
)

// The tests drive the server with the real driver (go.mongodb.org/
// mongo-driver/v2), each against its own server, and Main checks that
// neither leaves a goroutine behind.
func TestMain(m *testing.M) { testenv.Main(m) }

func start(t *testing.T, opts mongotest.Options) *mongotest.Server {
	t.Helper()
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	s, err := mongotest.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// connect returns a client of s; extra options apply after the URI.
func connect(t *testing.T, s *mongotest.Server, extra ...*options.ClientOptions) *mongo.Client {
	t.Helper()
	opts := append([]*options.ClientOptions{
		options.Client().ApplyURI(s.URI()).SetServerSelectionTimeout(5 * time.Second).SetConnectTimeout(5 * time.Second),
	}, extra...)
	cl, err := mongo.Connect(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := cl.Disconnect(ctx); err != nil {
			t.Errorf("disconnect: %v", err)
		}
	})
	return cl
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// serverCode returns the server error code in err's chain, or 0.
func serverCode(err error) int32 {
	var ce mongo.CommandError
	if errors.As(err, &ce) {
		return ce.Code
	}
	var we mongo.WriteException
	if errors.As(err, &we) && len(we.WriteErrors) > 0 {
		return int32(we.WriteErrors[0].Code)
	}
	return 0
}

func keys(t *testing.T, d bson.Raw) []string {
	t.Helper()
	elems, err := d.Elements()
	if err != nil {
		t.Fatal(err)
	}
	var ks []string
	for _, e := range elems {
		ks = append(ks, e.Key())
	}
	return ks
}

func mustInsert(t *testing.T, ctx context.Context, c *mongo.Collection, doc any) any {
	t.Helper()
	r, err := c.InsertOne(ctx, doc)
	if err != nil {
		t.Fatalf("insert: %v", err)
	}
	return r.InsertedID
}
