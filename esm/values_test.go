package esm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/esmd/esmd/internal/testenv"
)

func vmsg(value, path, constraint string) string {
	return "1 validation error detected: Value " + value + " at '" + path + "' failed to satisfy constraint: " + constraint
}

func withBase(src Source, mod func(*Config)) Config {
	c := sourceBase(src)
	mod(&c)
	return c
}

// TestStartingPositionTimestampBounds: no timestamp slips past the "not in
// the future" check by overflowing int64 (1e300 seconds is 1e303 ms).
func TestStartingPositionTimestampBounds(t *testing.T) {
	atTimestamp := func(ts float64) Config {
		return withBase(SourceKinesis, func(c *Config) {
			c.StartingPosition = sp("AT_TIMESTAMP")
			c.StartingPositionTimestamp = &ts
		})
	}
	future := "StartingPositionTimestamp cannot be in the future."
	runErrCases(t, []errCase{
		{"1e300", atTimestamp(1e300), ipv, 400, future},
		{"max float", atTimestamp(math.MaxFloat64), ipv, 400, future},
		{"+Inf", atTimestamp(math.Inf(1)), ipv, 400, future},
		{"past int64 milliseconds", atTimestamp(1e16), ipv, 400, future},
		{"an hour ahead", atTimestamp(float64(time.Now().Add(time.Hour).Unix())), ipv, 400, future},
		{"NaN", atTimestamp(math.NaN()), ipv, 400, "StartingPositionTimestamp must be a time after 1970-01-01T00:00:00Z: NaN"},
		{"-Inf", atTimestamp(math.Inf(-1)), ipv, 400, "StartingPositionTimestamp must be a time after 1970-01-01T00:00:00Z: -Inf"},
		{"-1e300", atTimestamp(-1e300), ipv, 400, "StartingPositionTimestamp must be a time after 1970-01-01T00:00:00Z: -1e+300"},
		{"-1", atTimestamp(-1), ipv, 400, "StartingPositionTimestamp must be a time after 1970-01-01T00:00:00Z: -1"},
	})
	for _, ts := range []float64{0, 1.5, float64(time.Now().Add(-time.Hour).Unix())} {
		t.Run(fmt.Sprint(ts), func(t *testing.T) {
			cfg := atTimestamp(ts)
			cfg.FunctionName = sp("f")
			if _, err := newTestEngine(t).Create(context.Background(), &cfg); err != nil {
				t.Errorf("timestamp %v refused: %v", ts, err)
			}
		})
	}
}

func TestEpochToTimeSaturates(t *testing.T) {
	maxT, minT := time.UnixMilli(math.MaxInt64).UTC(), time.UnixMilli(math.MinInt64).UTC()
	for _, tc := range []struct {
		sec  float64
		want time.Time
	}{
		{1e300, maxT}, {math.Inf(1), maxT}, {-1e300, minT}, {math.Inf(-1), minT}, {math.NaN(), time.UnixMilli(0).UTC()},
		{1569284520.333, time.UnixMilli(1569284520333).UTC()}, {-1.5, time.UnixMilli(-1500).UTC()},
	} {
		if got := epochToTime(tc.sec); !got.Equal(tc.want) {
			t.Errorf("epochToTime(%v) = %v, want %v", tc.sec, got, tc.want)
		}
	}
}

// TestLengthLimits: every string member esmd accepts is bounded, at the
// model's length where it has one (MaxArnLength where the model has only a
// pattern), with the front end's wording.
func TestLengthLimits(t *testing.T) {
	longARN := "arn:aws:sqs:us-east-1:111111111111:" + strings.Repeat("q", 500*1024)
	arnOf := func(n int) string {
		p := "arn:aws:secretsmanager:us-east-1:111111111111:secret:"
		return p + strings.Repeat("s", n-len(p))
	}
	tooLong := func(n int) string { return fmt.Sprintf("Member must have length less than or equal to %d", n) }
	fn257 := "arn:aws:lambda:us-east-1:111111111111:function:" + strings.Repeat("f", 257-len("arn:aws:lambda:us-east-1:111111111111:function:"))
	queue := strings.Repeat("q", 1001)
	topic := strings.Repeat("t", 250)
	uri := strings.Repeat("u", 201)
	group := strings.Repeat("g", 201)
	endpoint := strings.Repeat("h", 296) + ":9092"
	dest := "arn:aws:sqs:us-east-1:111111111111:" + strings.Repeat("d", 351-len("arn:aws:sqs:us-east-1:111111111111:"))
	registry := strings.Repeat("r", 10001)
	pollerGroup := strings.Repeat("p", 129)
	db := strings.Repeat("d", 64)
	coll := strings.Repeat("c", 58)
	runErrCases(t, []errCase{
		{"500 KB EventSourceArn", Config{EventSourceArn: &longARN}, ErrTypeValidation, 400, vmsg("'"+longARN+"'", "eventSourceArn", tooLong(MaxArnLength))},
		{"EventSourceArn 2049", Config{EventSourceArn: sp(sqsArn + strings.Repeat("q", MaxArnLength+1-len(sqsArn)))}, ErrTypeValidation, 400,
			vmsg("'"+sqsArn+strings.Repeat("q", MaxArnLength+1-len(sqsArn))+"'", "eventSourceArn", tooLong(MaxArnLength))},
		{"FunctionName ARN 257", Config{EventSourceArn: sp(sqsArn), FunctionName: &fn257}, ErrTypeValidation, 400, vmsg("'"+fn257+"'", "functionName", tooLong(256))},
		{"Queue 1001", withBase(SourceMQ, func(c *Config) { c.Queues = []string{queue} }), ErrTypeValidation, 400, vmsg("'"+queue+"'", "queues.1.member", tooLong(1000))},
		{"Topic 250", withBase(SourceMSK, func(c *Config) { c.Topics = []string{topic} }), ErrTypeValidation, 400, vmsg("'"+topic+"'", "topics.1.member", tooLong(249))},
		{"SAC URI 201", withBase(SourceMQ, func(c *Config) { c.SourceAccessConfigurations[0].URI = &uri }), ErrTypeValidation, 400,
			vmsg("'"+uri+"'", "sourceAccessConfigurations.1.member.uRI", tooLong(200))},
		{"KMSKeyArn 2049", withBase(SourceSQS, func(c *Config) { c.KMSKeyArn = sp(arnOf(MaxArnLength + 1)) }), ErrTypeValidation, 400,
			vmsg("'"+arnOf(MaxArnLength+1)+"'", "kMSKeyArn", tooLong(MaxArnLength))},
		{"ConsumerGroupId 201", withBase(SourceKafka, func(c *Config) {
			c.SelfManagedKafkaEventSourceConfig = &KafkaEventSourceConfig{ConsumerGroupId: &group}
		}),
			ErrTypeValidation, 400, vmsg("'"+group+"'", "selfManagedKafkaEventSourceConfig.consumerGroupId", tooLong(200))},
		{"bootstrap server 301", withBase(SourceKafka, func(c *Config) { c.SelfManagedEventSource.Endpoints["KAFKA_BOOTSTRAP_SERVERS"] = []string{endpoint} }),
			ErrTypeValidation, 400, vmsg("'"+endpoint+"'", "selfManagedEventSource.endpoints.KAFKA_BOOTSTRAP_SERVERS.1.member", tooLong(300))},
		{"OnFailure destination 351", withBase(SourceKinesis, func(c *Config) { c.DestinationConfig = &DestinationConfig{OnFailure: &Destination{Destination: &dest}} }),
			ErrTypeValidation, 400, vmsg("'"+dest+"'", "destinationConfig.onFailure.destination", tooLong(350))},
		{"schema registry URI 10001", withBase(SourceKafka, func(c *Config) {
			c.SelfManagedKafkaEventSourceConfig = &KafkaEventSourceConfig{SchemaRegistryConfig: &SchemaRegistryConfig{SchemaRegistryURI: &registry}}
		}), ErrTypeValidation, 400, vmsg("'"+registry+"'", "selfManagedKafkaEventSourceConfig.schemaRegistryConfig.schemaRegistryURI", tooLong(10000))},
		{"schema registry access config 2049", withBase(SourceKafka, func(c *Config) {
			c.SelfManagedKafkaEventSourceConfig = &KafkaEventSourceConfig{SchemaRegistryConfig: &SchemaRegistryConfig{
				AccessConfigs: []SourceAccessConfiguration{{Type: sp("BASIC_AUTH"), URI: sp(arnOf(MaxArnLength + 1))}}}}
		}), ErrTypeValidation, 400, vmsg("'"+arnOf(MaxArnLength+1)+"'", "selfManagedKafkaEventSourceConfig.schemaRegistryConfig.accessConfigs.1.member.uRI", tooLong(MaxArnLength))},
		{"PollerGroupName 129", withBase(SourceKafka, func(c *Config) { c.ProvisionedPollerConfig = &ProvisionedPollerConfig{PollerGroupName: &pollerGroup} }),
			ErrTypeValidation, 400, vmsg("'"+pollerGroup+"'", "provisionedPollerConfig.pollerGroupName", tooLong(128))},
		{"DatabaseName 64", withBase(SourceDocumentDB, func(c *Config) { c.DocumentDBEventSourceConfig.DatabaseName = &db }), ErrTypeValidation, 400,
			vmsg("'"+db+"'", "documentDBEventSourceConfig.databaseName", tooLong(63))},
		{"CollectionName 58", withBase(SourceDocumentDB, func(c *Config) { c.DocumentDBEventSourceConfig.CollectionName = &coll }), ErrTypeValidation, 400,
			vmsg("'"+coll+"'", "documentDBEventSourceConfig.collectionName", tooLong(57))},
	})
	// The longest of each is accepted.
	for name, cfg := range map[string]Config{
		"EventSourceArn 2048": {EventSourceArn: sp(sqsArn + strings.Repeat("q", MaxArnLength-len(sqsArn)))},
		"KMSKeyArn 2048":      withBase(SourceSQS, func(c *Config) { c.KMSKeyArn = sp(arnOf(MaxArnLength)) }),
		"Queue 1000":          withBase(SourceMQ, func(c *Config) { c.Queues = []string{queue[1:]} }),
		"Topic 249":           withBase(SourceMSK, func(c *Config) { c.Topics = []string{topic[1:]} }),
		"PollerGroupName 128": withBase(SourceKafka, func(c *Config) {
			c.ProvisionedPollerConfig = &ProvisionedPollerConfig{PollerGroupName: sp(pollerGroup[1:])}
		}),
	} {
		t.Run(name+" accepted", func(t *testing.T) {
			cfg.FunctionName = sp("f")
			if _, err := newTestEngine(t).Create(context.Background(), &cfg); err != nil {
				t.Errorf("refused: %v", err)
			}
		})
	}
	t.Run("List EventSourceArn 2049", func(t *testing.T) {
		long := sqsArn + strings.Repeat("q", MaxArnLength+1-len(sqsArn))
		_, _, err := newTestEngine(t).List(context.Background(), ListInput{EventSourceArn: &long})
		if ae := asAPIError(t, err); ae.Type != ErrTypeValidation || ae.Message != vmsg("'"+long+"'", "eventSourceArn", tooLong(MaxArnLength)) {
			t.Errorf("got %v", ae)
		}
	})
}

// TestPartitions: ARNs of every partition, the ISO regions and the
// European Sovereign Cloud (eusc-) included, name event sources,
// destinations and functions.
func TestPartitions(t *testing.T) {
	for _, tc := range []struct{ partition, region string }{
		{"aws", "us-east-1"}, {"aws-cn", "cn-north-1"}, {"aws-us-gov", "us-gov-west-1"},
		{"aws-iso", "us-iso-east-1"}, {"aws-iso-b", "us-isob-east-1"}, {"aws-iso-e", "eu-isoe-west-1"},
		{"aws-iso-f", "us-isof-south-1"}, {"aws-eusc", "eusc-de-east-1"},
	} {
		t.Run(tc.partition, func(t *testing.T) {
			arn := func(service, resource string) string {
				return "arn:" + tc.partition + ":" + service + ":" + tc.region + ":111111111111:" + resource
			}
			e := newTestEngine(t)
			for _, cfg := range []Config{
				{EventSourceArn: sp(arn("sqs", "q"))},
				{EventSourceArn: sp(arn("kinesis", "stream/s")), StartingPosition: sp("LATEST"),
					DestinationConfig: &DestinationConfig{OnFailure: &Destination{Destination: sp(arn("sqs", "dlq"))}}},
				{EventSourceArn: sp(arn("dynamodb", "table/t/stream/2024-01-01T00:00:00.000")), StartingPosition: sp("LATEST")},
			} {
				cfg.FunctionName = sp(arn("lambda", "function:f"))
				m, err := e.Create(context.Background(), &cfg)
				if err != nil {
					t.Fatalf("%s: %v", *cfg.EventSourceArn, err)
				}
				if m.FunctionArn != arn("lambda", "function:f") {
					t.Errorf("FunctionArn %s", m.FunctionArn)
				}
			}
		})
	}
	// Not a region of any partition.
	bad := "arn:aws:sqs:moon-base-one:111111111111:q"
	runErrCases(t, []errCase{{"unknown region form", Config{EventSourceArn: &bad}, ErrTypeValidation, 400,
		vmsg("'"+bad+"'", "eventSourceArn", "Member must satisfy regular expression pattern: "+patArn)}})
}

// TestSourceAccessConfigurationLimits: the model's list maximum is 22, and
// its URI pattern has no space.
func TestSourceAccessConfigurationLimits(t *testing.T) {
	sacs := func(n int) []SourceAccessConfiguration {
		out := []SourceAccessConfiguration{{Type: sp("BASIC_AUTH"), URI: sp(secretArn)}}
		for i := 1; i < n; i++ {
			out = append(out, SourceAccessConfiguration{Type: sp("VPC_SUBNET"), URI: sp(fmt.Sprintf("subnet:subnet-%d", i))})
		}
		return out
	}
	runErrCases(t, []errCase{
		{"23 configurations", withBase(SourceKafka, func(c *Config) { c.SourceAccessConfigurations = sacs(23) }), ErrTypeValidation, 400,
			vmsg("'[...]'", "sourceAccessConfigurations", "Member must have length less than or equal to 22")},
		{"space in URI", withBase(SourceKafka, func(c *Config) {
			c.SourceAccessConfigurations[0].URI = sp("arn:aws:secretsmanager:us-east-1:111111111111:secret:my secret")
		}),
			ErrTypeValidation, 400, vmsg("'arn:aws:secretsmanager:us-east-1:111111111111:secret:my secret'", "sourceAccessConfigurations.1.member.uRI",
				"Member must satisfy regular expression pattern: "+patURI)},
	})
	cfg := withBase(SourceKafka, func(c *Config) { c.SourceAccessConfigurations = sacs(22) })
	cfg.FunctionName = sp("f")
	if _, err := newTestEngine(t).Create(context.Background(), &cfg); err != nil {
		t.Errorf("22 configurations refused: %v", err)
	}
}

// TestOnFailureDestinationTypes: each source sends discarded records only
// to the destinations AWS lets it use.
func TestOnFailureDestinationTypes(t *testing.T) {
	const (
		sns    = "arn:aws:sns:us-east-1:111111111111:topic"
		s3     = "arn:aws:s3:::bucket"
		fn     = "arn:aws:lambda:us-east-1:111111111111:function:f"
		bus    = "arn:aws:events:us-east-1:111111111111:event-bus/default"
		kafka  = "kafka://dlq"
		noDest = "Unsupported DestinationConfig parameter for given event source mapping type."
	)
	accepted := map[Source][]string{
		SourceKinesis:  {sqsArn, sns, s3},
		SourceDynamoDB: {sqsArn, sns, s3},
		SourceMSK:      {sqsArn, sns, s3, kafka},
		SourceKafka:    {sqsArn, sns, s3, kafka},
	}
	for _, src := range allSources {
		for _, dest := range []string{sqsArn, sns, s3, fn, bus, kafka} {
			t.Run(string(src)+"/"+dest, func(t *testing.T) {
				cfg := withBase(src, func(c *Config) {
					c.DestinationConfig = &DestinationConfig{OnFailure: &Destination{Destination: sp(dest)}}
				})
				cfg.FunctionName = sp("f")
				e := newTestEngine(t)
				_, err := e.Create(context.Background(), &cfg)
				var want string
				switch types, ok := accepted[src]; {
				case !ok:
					want = noDest
				case slices.Contains(types, dest):
				case dest == kafka:
					want = "Unsupported destination type for given event source mapping type: " + kafka
				default:
					want = "The destination ARN " + dest + " is invalid."
				}
				if want == "" {
					if err != nil {
						t.Errorf("refused: %v", err)
					}
					return
				}
				if ae := asAPIError(t, err); ae.Type != ipv || ae.Status != 400 || ae.Message != want {
					t.Errorf("got %s %d %q, want %q", ae.Type, ae.Status, ae.Message, want)
				}
			})
		}
	}
	t.Run("update", func(t *testing.T) {
		e := newTestEngine(t)
		cfg := withBase(SourceKinesis, func(c *Config) { c.FunctionName = sp("f") })
		m, err := e.Create(context.Background(), &cfg)
		if err != nil {
			t.Fatal(err)
		}
		waitState(t, e, m.UUID, StateEnabled)
		_, err = e.Update(context.Background(), m.UUID, &Config{DestinationConfig: &DestinationConfig{OnFailure: &Destination{Destination: sp(fn)}}})
		if ae := asAPIError(t, err); ae.Message != "The destination ARN "+fn+" is invalid." {
			t.Errorf("got %v", ae)
		}
	})
}

// brokenFunctions is a FunctionChecker whose Lambda endpoint does not answer.
type brokenFunctions struct{}

func (brokenFunctions) FunctionExists(context.Context, string) (bool, error) {
	return false, errors.New(`operation error Lambda: GetFunction, https response error: Get "http://10.1.2.3:9001/2015-03-31/functions/f": dial tcp 10.1.2.3:9001: connect: connection refused`)
}

// TestFunctionLookupFailureHidesEndpoint: an unreachable GetFunction gives
// AWS's ServiceException; the endpoint is in the log, not in the answer.
func TestFunctionLookupFailureHidesEndpoint(t *testing.T) {
	var logs bytes.Buffer
	e := newTestEngine(t, WithFunctionChecker(brokenFunctions{}), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	_, err := e.Create(context.Background(), &Config{FunctionName: sp("f"), EventSourceArn: sp(sqsArn)})
	ae := asAPIError(t, err)
	if ae.Type != ErrTypeService || ae.Status != 500 || ae.Message != "An error occurred and the request cannot be processed." {
		t.Errorf("got %s %d %q", ae.Type, ae.Status, ae.Message)
	}
	if !strings.Contains(logs.String(), "10.1.2.3:9001") {
		t.Errorf("the log lacks the lookup's detail: %s", logs.String())
	}
}

// failingStore refuses every write.
type failingStore struct{ memStore }

func (*failingStore) SaveMapping(context.Context, string, []byte) error {
	return errors.New("write /var/lib/esmd/esmd.db: no space left on device")
}

func TestStoreFailureHidesPath(t *testing.T) {
	var logs bytes.Buffer
	e := newTestEngine(t, WithStore(&failingStore{memStore{m: map[string][]byte{}}}), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	_, err := e.Create(context.Background(), &Config{FunctionName: sp("f"), EventSourceArn: sp(sqsArn)})
	ae := asAPIError(t, err)
	if ae.Type != ErrTypeService || strings.Contains(ae.Message, "/var/lib") {
		t.Errorf("got %s %q", ae.Type, ae.Message)
	}
	if !strings.Contains(logs.String(), "/var/lib/esmd/esmd.db") {
		t.Errorf("the log lacks the store's error: %s", logs.String())
	}
}

// TestDeletingVisibleUntilPipelineStops: Get and List show Deleting, and
// changes are refused, for as long as the mapping's pipeline is stopping.
func TestDeletingVisibleUntilPipelineStops(t *testing.T) {
	ctx := context.Background()
	e, run, m := heldMapping(t)
	del, err := e.Delete(ctx, m.UUID)
	if err != nil || del.State != StateDeleting {
		t.Fatalf("delete: %v %v", del, err)
	}
	// The runner holds its pipeline until released: the mapping is being
	// torn down and must say so.
	got, err := e.Get(ctx, m.UUID)
	if err != nil || got.State != StateDeleting {
		t.Fatalf("get while stopping: %v %v", got, err)
	}
	page, _, err := e.List(ctx, ListInput{})
	if err != nil || len(page) != 1 || page[0].State != StateDeleting {
		t.Fatalf("list while stopping: %v %v", page, err)
	}
	if _, err := e.Update(ctx, m.UUID, &Config{BatchSize: ip(2)}); asAPIError(t, err).Type != ErrTypeResourceInUse {
		t.Errorf("update while Deleting: %v", err)
	}
	if _, err := e.Delete(ctx, m.UUID); asAPIError(t, err).Type != ErrTypeResourceInUse {
		t.Errorf("second delete while Deleting: %v", err)
	}
	if run.get(m.UUID) == nil {
		t.Fatal("pipeline gone before its release")
	}
	close(run.release)
	waitGone(t, e, m.UUID)
	if run.get(m.UUID) != nil {
		t.Error("mapping removed while its pipeline still runs")
	}
}

func waitGone(t *testing.T, e *Engine, id string) {
	t.Helper()
	testenv.EventuallyTrue(t, 5*time.Second, "mapping removed", func() bool {
		_, err := e.Get(context.Background(), id)
		var ae *Error
		return errors.As(err, &ae) && ae.Type == ErrTypeResourceNotFound
	})
}

// TestProvisionedPollerLimits: the model's 1-200 and 1-2000, with SQS's
// floor of 2, on both ends and for every source that takes the member.
func TestProvisionedPollerLimits(t *testing.T) {
	pollers := func(src Source, lo, hi int64) Config {
		return withBase(src, func(c *Config) {
			c.ProvisionedPollerConfig = &ProvisionedPollerConfig{MinimumPollers: &lo, MaximumPollers: &hi}
		})
	}
	for name, cfg := range map[string]Config{
		"SQS 2-2000":    pollers(SourceSQS, 2, 2000),
		"SQS 200-200":   pollers(SourceSQS, 200, 200),
		"MSK 1-2000":    pollers(SourceMSK, 1, 2000),
		"Kafka 1-1":     pollers(SourceKafka, 1, 1),
		"Kafka 200-200": pollers(SourceKafka, 200, 200),
	} {
		t.Run(name, func(t *testing.T) {
			cfg.FunctionName = sp("f")
			m, err := newTestEngine(t).Create(context.Background(), &cfg)
			if err != nil {
				t.Fatal(err)
			}
			if p := m.Config.ProvisionedPollerConfig; *p.MinimumPollers != *cfg.ProvisionedPollerConfig.MinimumPollers ||
				*p.MaximumPollers != *cfg.ProvisionedPollerConfig.MaximumPollers {
				t.Errorf("stored %d-%d", *p.MinimumPollers, *p.MaximumPollers)
			}
		})
	}
	runErrCases(t, []errCase{
		{"SQS max 2001", pollers(SourceSQS, 2, 2001), ErrTypeValidation, 400,
			vmsg("'2001'", "provisionedPollerConfig.maximumPollers", "Member must have value less than or equal to 2000")},
		{"Kafka min 201", pollers(SourceKafka, 201, 2000), ErrTypeValidation, 400,
			vmsg("'201'", "provisionedPollerConfig.minimumPollers", "Member must have value less than or equal to 200")},
		{"min over max", pollers(SourceKafka, 10, 5), ipv, 400, "MinimumPollers must be less than or equal to MaximumPollers."},
		{"SQS max 1", pollers(SourceSQS, 1, 1), ipv, 400, "MinimumPollers and MaximumPollers must be at least 2 for Amazon SQS event sources."},
	})
}
