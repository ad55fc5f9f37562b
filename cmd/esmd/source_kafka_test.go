package main

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/testenv"
)

// TestServeKafkaEndToEnd drives esmd serve with a self-managed Kafka
// mapping the way a user does: the AWS SDK creates the mapping (bootstrap
// servers of a kfake cluster, a value filter), records are produced to
// three partitions, and esmd invokes a real function (aws-lambda-go under
// the Runtime Interface Emulator) until the mapping's consumer group (its
// UUID) has committed every record, filtered-out ones included.
func TestServeKafkaEndToEnd(t *testing.T) {
	testenv.Skip(t)
	rie := testenv.RIE(t)
	seeds := testenv.Kafka(t)
	topic := fmt.Sprintf("serve-e2e-%d", time.Now().UnixNano())
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, 3, 1
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if err := kerr.ErrorForCode(resp.Topics[0].ErrorCode); err != nil {
		t.Fatal(err)
	}

	c := newCommon("test", io.Discard, "127.0.0.1:0")
	c.dataDir = t.TempDir()
	c.invokeMode = "rie"
	c.lambdaEndpoint = rie
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- serve(sctx, c, c.logger(io.Discard), func(_ *esm.Engine, addr string) error { addrc <- addr; return nil })
	}()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	api := client(<-addrc)
	out, err := api.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("function"),
		Topics: []string{topic}, StartingPosition: types.EventSourcePositionTrimHorizon, BatchSize: aws.Int32(10),
		SelfManagedEventSource: &types.SelfManagedEventSource{Endpoints: map[string][]string{"KAFKA_BOOTSTRAP_SERVERS": seeds}},
		// An unauthenticated cluster is configured with its VPC on AWS;
		// esmd accepts the VPC and dials the brokers directly.
		SourceAccessConfigurations: []types.SourceAccessConfiguration{
			{Type: types.SourceAccessTypeVpcSubnet, URI: aws.String("subnet:subnet-0123")},
			{Type: types.SourceAccessTypeVpcSecurityGroup, URI: aws.String("security_group:sg-0123")}},
		FilterCriteria: &types.FilterCriteria{Filters: []types.Filter{{Pattern: aws.String(`{"value":{"keep":[true]}}`)}}}})
	if err != nil {
		t.Fatal(err)
	}
	const perPart = 30
	var recs []*kgo.Record
	for i := range perPart {
		for pt := range int32(3) {
			recs = append(recs, &kgo.Record{Partition: pt, Key: fmt.Appendf(nil, "k%d", pt), Value: fmt.Appendf(nil, `{"n":%d,"keep":%v}`, i, i%4 != 0)})
		}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func(ctx context.Context) error {
		req := kmsg.NewPtrOffsetFetchRequest()
		req.Group = aws.ToString(out.UUID)
		rt := kmsg.NewOffsetFetchRequestTopic()
		rt.Topic, rt.Partitions = topic, []int32{0, 1, 2}
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return err
		}
		for _, tp := range resp.Topics {
			for _, pp := range tp.Partitions {
				if pp.Offset != perPart {
					return fmt.Errorf("partition %d committed at %d", pp.Partition, pp.Offset)
				}
			}
		}
		return nil
	})
	got, err := api.GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: out.UUID})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(got.State) != "Enabled" || aws.ToString(got.LastProcessingResult) != "OK" {
		t.Errorf("state %s, last processing result %q", aws.ToString(got.State), aws.ToString(got.LastProcessingResult))
	}
}
