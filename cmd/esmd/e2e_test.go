package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/testenv"
	"github.com/esmd/esmd/payload"
	"github.com/esmd/esmd/pollers/memsource"
	"github.com/esmd/esmd/source"
)

func TestMain(m *testing.M) {
	if os.Getenv(asEsmd) == "1" {
		// The test binary runs as esmd: esmd bench's children in tests.
		asEsmdMain()
	}
	testenv.Main(m)
}

// TestServeRunsMappingsEndToEnd drives esmd serve the way a user does: the
// AWS SDK creates a mapping, records appear in the source, and esmd invokes
// a real function (aws-lambda-go under the Runtime Interface Emulator,
// --invoke-mode rie) until the source is checkpointed past every record.
// The source is the in-memory stream memsource standing in for Kinesis, so
// the pipeline's own behaviour is checked apart from any poller.
func TestServeRunsMappingsEndToEnd(t *testing.T) {
	testenv.Skip(t)
	rie := testenv.RIE(t)
	log := memsource.NewLog(2)
	// Stand memsource in for the Kinesis poller (and its stream check) for
	// this test only.
	c := newCommon("test", io.Discard, "127.0.0.1:0")
	for _, d := range c.sources {
		if d.Source == esm.SourceKinesis {
			d.Check = nil
			d.Open = func(context.Context, *source.Env, *esm.Mapping) (source.Poller, error) { return log.NewPoller(50), nil }
		}
	}
	c.dataDir = t.TempDir()
	c.invokeMode = "rie"
	c.lambdaEndpoint = rie
	ctx := context.Background()
	addr, stop := serveWith(t, c)
	defer stop()
	cl := client(addr)
	arn := "arn:aws:kinesis:us-east-1:000000000000:stream/demo"
	out, err := cl.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("function"),
		EventSourceArn: aws.String(arn), StartingPosition: types.EventSourcePositionTrimHorizon, BatchSize: aws.Int32(10),
		FilterCriteria: &types.FilterCriteria{Filters: []types.Filter{{Pattern: aws.String(`{"data":{"keep":[true]}}`)}}}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		key := fmt.Sprintf("pk-%d", i%5)
		log.ProduceData(key, func(lane, seq string, at time.Time) []byte {
			return payload.AppendKinesis(nil, &payload.KinesisRecord{ShardID: lane, PartitionKey: key, SequenceNumber: seq,
				Data: fmt.Appendf(nil, `{"n":%d,"keep":%v}`, i, i%4 != 0), ApproximateArrivalTimestamp: at,
				AWSRegion: "us-east-1", EventSourceARN: arn})
		})
	}
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		if a, b := log.Checkpoint("lane-0"), log.Checkpoint("lane-1"); a+b+2 != 40 {
			return fmt.Errorf("checkpoints %d and %d", a, b)
		}
		return nil
	})
	got, err := cl.GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: out.UUID})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(got.State) != "Enabled" || aws.ToString(got.LastProcessingResult) != "OK" {
		t.Errorf("state %s, last processing result %q", aws.ToString(got.State), aws.ToString(got.LastProcessingResult))
	}
}
