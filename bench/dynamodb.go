package bench

import (
	"bytes"
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/ddbstreams"
)

// dynamoTarget is a DynamoDB stream per round on an in-process DynamoDB
// Streams server (internal/ddbstreams): nothing else serves the DynamoDB
// Streams API on the project's machines. Records are appended to the
// stream as INSERTs of items {id, bk, kind, pad} (strings); esmd and the
// raw loop find the server through AWS_ENDPOINT_URL_DYNAMODB_STREAMS.
type dynamoTarget struct {
	srv    *ddbstreams.Server
	shards int
	arn    string
}

func newDynamoDB(_ context.Context, cfg *Config) (*dynamoTarget, error) {
	srv, err := ddbstreams.Start(ddbstreams.WithRegion(region()))
	if err != nil {
		return nil, fmt.Errorf("in-process DynamoDB Streams: %w", err)
	}
	return &dynamoTarget{srv: srv, shards: cfg.Partitions}, nil
}

func (t *dynamoTarget) Prepare(_ context.Context, round string) error {
	arn, err := t.srv.CreateStream(ddbstreams.StreamConfig{Table: "esmd-bench-" + round, Shards: t.shards, ViewType: types.StreamViewTypeNewImage})
	t.arn = arn
	return err
}

// Produce appends an INSERT per body, its attributes read from the
// record's fixed layout (Record).
func (t *dynamoTarget) Produce(_ context.Context, bodies [][]byte) error {
	for _, b := range bodies {
		bk, kind, pad, ok := recordFields(b)
		if !ok {
			return fmt.Errorf("not a bench record: %.60s", b)
		}
		id := bk[len(tokenPrefix) : bytes.IndexByte(bk[len(tokenPrefix):], ':')+len(tokenPrefix)]
		key := map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: string(id)}}
		img := map[string]types.AttributeValue{"id": key["id"],
			"bk":   &types.AttributeValueMemberS{Value: string(bk)},
			"kind": &types.AttributeValueMemberS{Value: string(kind)},
			"pad":  &types.AttributeValueMemberS{Value: string(pad)}}
		if _, err := t.srv.Put(t.arn, ddbstreams.Change{EventName: types.OperationTypeInsert, Keys: key, NewImage: img}); err != nil {
			return err
		}
	}
	return nil
}

// recordFields splits a Record body into its three string fields.
func recordFields(b []byte) (bk, kind, pad []byte, ok bool) {
	rest, ok := bytes.CutPrefix(b, []byte(`{"bk":"`))
	if !ok {
		return nil, nil, nil, false
	}
	bk, rest, ok = bytes.Cut(rest, []byte(`","kind":"`))
	if !ok {
		return nil, nil, nil, false
	}
	kind, rest, ok = bytes.Cut(rest, []byte(`","pad":"`))
	if !ok {
		return nil, nil, nil, false
	}
	pad, ok = bytes.CutSuffix(rest, []byte(`"}`))
	return bk, kind, pad, ok
}

func (t *dynamoTarget) Mapping() *esm.Config {
	return &esm.Config{EventSourceArn: ptr(t.arn), StartingPosition: ptr("TRIM_HORIZON")}
}

func (t *dynamoTarget) Raw() RawSpec { return RawSpec{Name: t.arn, Arn: t.arn, Partitions: t.shards} }

func (t *dynamoTarget) Filter() string { return `{"dynamodb":{"NewImage":{"kind":{"S":["match"]}}}}` }

// ChildEnv points children at the in-process server.
func (t *dynamoTarget) ChildEnv() []string {
	return []string{"AWS_ENDPOINT_URL_DYNAMODB_STREAMS=" + t.srv.URL()}
}

func (t *dynamoTarget) Close() { _ = t.srv.Close() }
