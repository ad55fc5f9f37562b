package esm

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// errCase is one refused request with the exact error AWS gives.
type errCase struct {
	name    string
	cfg     Config
	typ     string
	status  int
	message string
}

func runErrCases(t *testing.T, cases []errCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEngine(t)
			cfg := tc.cfg
			if cfg.FunctionName == nil {
				cfg.FunctionName = sp("my-function")
			}
			_, err := e.Create(context.Background(), &cfg)
			if err == nil {
				t.Fatalf("create succeeded, want %s %q", tc.typ, tc.message)
			}
			ae := asAPIError(t, err)
			if ae.Type != tc.typ || ae.Status != tc.status || ae.Message != tc.message {
				t.Errorf("got %s %d %q\nwant %s %d %q", ae.Type, ae.Status, ae.Message, tc.typ, tc.status, tc.message)
			}
		})
	}
}

const ipv = ErrTypeInvalidParameterValue

// TestRecordedCreateErrors covers every create-time message recorded from
// real AWS in conformance/aws-recordings.
func TestRecordedCreateErrors(t *testing.T) {
	runErrCases(t, []errCase{
		{"no event source", Config{}, ipv, 400, "Unrecognized event source."},
		{"OnSuccess on SQS", Config{EventSourceArn: sp(sqsArn), DestinationConfig: &DestinationConfig{OnSuccess: &Destination{Destination: sp(sqsArn)}}},
			ipv, 400, "Unsupported DestinationConfig parameter for given event source mapping type."},
		{"DynamoDB without StartingPosition", Config{EventSourceArn: sp(ddbArn)},
			ipv, 400, "1 validation error detected: Value null at 'startingPosition' failed to satisfy constraint: Member must not be null."},
		{"Kinesis without StartingPosition", Config{EventSourceArn: sp(kinesisArn)},
			ipv, 400, "1 validation error detected: Value null at 'startingPosition' failed to satisfy constraint: Member must not be null."},
		{"Kinesis invalid StartingPosition", Config{EventSourceArn: sp(kinesisArn), StartingPosition: sp("invalid")},
			ErrTypeValidation, 400, "1 validation error detected: Value 'invalid' at 'startingPosition' failed to satisfy constraint: Member must satisfy enum value set: [LATEST, AT_TIMESTAMP, TRIM_HORIZON]"},
		{"DynamoDB invalid StartingPosition", Config{EventSourceArn: sp(ddbArn), StartingPosition: sp("invalid")},
			ErrTypeValidation, 400, "1 validation error detected: Value 'invalid' at 'startingPosition' failed to satisfy constraint: Member must satisfy enum value set: [LATEST, AT_TIMESTAMP, TRIM_HORIZON]"},
		{"DynamoDB AT_TIMESTAMP", Config{EventSourceArn: sp(ddbArn), StartingPosition: sp("AT_TIMESTAMP"), StartingPositionTimestamp: func() *float64 { f := 1.0; return &f }()},
			ipv, 400, "Unsupported starting position for arn type: " + ddbArn},
		{"SQS batch over 10 without window", Config{EventSourceArn: sp(sqsArn), BatchSize: ip(15)},
			ipv, 400, "Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10"},
		{"SQS batch over 10 with window 0", Config{EventSourceArn: sp(sqsArn), BatchSize: ip(15), MaximumBatchingWindowInSeconds: ip(0)},
			ipv, 400, "Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10"},
		{"self-managed Kafka without SourceAccessConfigurations", Config{
			SelfManagedEventSource: &SelfManagedEventSource{Endpoints: map[string][]string{"KAFKA_BOOTSTRAP_SERVERS": {"kafka:1000"}}},
			Topics:                 []string{"topic"}},
			ipv, 400, "Required 'sourceAccessConfigurations' parameter is missing."},
		{"function name over 64", Config{EventSourceArn: sp(sqsArn), FunctionName: sp(strings.Repeat("a", 65))},
			ErrTypeValidation, 400, "1 validation error detected: Value '" + strings.Repeat("a", 65) + "' at 'functionName' failed to satisfy constraint: Member must have length less than or equal to 64"},
	})
}

func TestUnknownFunction(t *testing.T) {
	fns := &fakeFunctions{exists: map[string]bool{"arn:aws:lambda:us-east-1:111111111111:function:exists": true}}
	e := newTestEngine(t, WithFunctionChecker(fns))
	_, err := e.Create(context.Background(), &Config{FunctionName: sp("missing"), EventSourceArn: sp(sqsArn)})
	ae := asAPIError(t, err)
	if ae.Type != ipv || ae.Status != 400 || ae.Message != "Function does not exist" {
		t.Errorf("got %v", ae)
	}
	// The source and DestinationConfig checks come before the lookup (recorded order).
	fns.calls = 0
	_, err = e.Create(context.Background(), &Config{FunctionName: sp("missing")})
	if ae := asAPIError(t, err); ae.Message != "Unrecognized event source." || fns.calls != 0 {
		t.Errorf("got %q after %d lookups, want Unrecognized event source. before any lookup", ae.Message, fns.calls)
	}
	_, err = e.Create(context.Background(), &Config{FunctionName: sp("missing"), EventSourceArn: sp(sqsArn),
		DestinationConfig: &DestinationConfig{OnSuccess: &Destination{Destination: sp(sqsArn)}}})
	if ae := asAPIError(t, err); !strings.HasPrefix(ae.Message, "Unsupported DestinationConfig") || fns.calls != 0 {
		t.Errorf("got %q after %d lookups", ae.Message, fns.calls)
	}
	if _, err := e.Create(context.Background(), &Config{FunctionName: sp("exists"), EventSourceArn: sp(sqsArn)}); err != nil {
		t.Errorf("existing function: %v", err)
	}
}

// sourceBase returns a minimal valid create request for each source.
func sourceBase(src Source) Config {
	sac := []SourceAccessConfiguration{{Type: sp("BASIC_AUTH"), URI: sp(secretArn)}}
	switch src {
	case SourceSQS:
		return Config{EventSourceArn: sp(sqsArn)}
	case SourceKinesis:
		return Config{EventSourceArn: sp(kinesisArn), StartingPosition: sp("LATEST")}
	case SourceDynamoDB:
		return Config{EventSourceArn: sp(ddbArn), StartingPosition: sp("LATEST")}
	case SourceMSK:
		return Config{EventSourceArn: sp(mskArn), StartingPosition: sp("LATEST"), Topics: []string{"topic"}}
	case SourceKafka:
		return Config{SelfManagedEventSource: &SelfManagedEventSource{Endpoints: map[string][]string{"KAFKA_BOOTSTRAP_SERVERS": {"kafka:9092"}}},
			Topics: []string{"topic"}, SourceAccessConfigurations: sac}
	case SourceMQ:
		return Config{EventSourceArn: sp(mqArn), Queues: []string{"q"}, SourceAccessConfigurations: sac}
	case SourceDocumentDB:
		return Config{EventSourceArn: sp(docdbArn), StartingPosition: sp("LATEST"),
			DocumentDBEventSourceConfig: &DocumentDBEventSourceConfig{DatabaseName: sp("db")}, SourceAccessConfigurations: sac}
	}
	panic(src)
}

func TestEverySourceAcceptsItsMinimalRequest(t *testing.T) {
	for _, src := range allSources {
		t.Run(string(src), func(t *testing.T) {
			e := newTestEngine(t)
			cfg := sourceBase(src)
			cfg.FunctionName = sp("f")
			m, err := e.Create(context.Background(), &cfg)
			if err != nil {
				t.Fatal(err)
			}
			if m.Source != src {
				t.Errorf("source %s, want %s", m.Source, src)
			}
		})
	}
}

// TestNumericRanges checks both ends of every ranged member with the
// front-end ValidationException wording.
func TestNumericRanges(t *testing.T) {
	type rng struct {
		path   string
		src    Source
		set    func(*Config, int64)
		lo, hi int64
	}
	ranges := []rng{
		{"batchSize", SourceKinesis, func(c *Config, v int64) { c.BatchSize = &v }, 1, 10000},
		{"maximumBatchingWindowInSeconds", SourceKinesis, func(c *Config, v int64) { c.MaximumBatchingWindowInSeconds = &v }, 0, 300},
		{"parallelizationFactor", SourceKinesis, func(c *Config, v int64) { c.ParallelizationFactor = &v }, 1, 10},
		{"maximumRecordAgeInSeconds", SourceKinesis, func(c *Config, v int64) { c.MaximumRecordAgeInSeconds = &v }, -1, 604800},
		{"maximumRetryAttempts", SourceKinesis, func(c *Config, v int64) { c.MaximumRetryAttempts = &v }, -1, 10000},
		{"tumblingWindowInSeconds", SourceKinesis, func(c *Config, v int64) { c.TumblingWindowInSeconds = &v }, 0, 900},
		{"scalingConfig.maximumConcurrency", SourceSQS, func(c *Config, v int64) { c.ScalingConfig = &ScalingConfig{MaximumConcurrency: &v} }, 2, 1000},
		{"provisionedPollerConfig.minimumPollers", SourceKafka, func(c *Config, v int64) { c.ProvisionedPollerConfig = &ProvisionedPollerConfig{MinimumPollers: &v} }, 1, 200},
		{"provisionedPollerConfig.maximumPollers", SourceKafka, func(c *Config, v int64) { c.ProvisionedPollerConfig = &ProvisionedPollerConfig{MaximumPollers: &v} }, 1, 2000},
	}
	for _, r := range ranges {
		for _, tc := range []struct {
			v          int64
			constraint string
		}{
			{r.lo - 1, fmt.Sprintf("Member must have value greater than or equal to %d", r.lo)},
			{r.hi + 1, fmt.Sprintf("Member must have value less than or equal to %d", r.hi)},
		} {
			t.Run(fmt.Sprintf("%s=%d", r.path, tc.v), func(t *testing.T) {
				e := newTestEngine(t)
				cfg := sourceBase(r.src)
				cfg.FunctionName = sp("f")
				r.set(&cfg, tc.v)
				_, err := e.Create(context.Background(), &cfg)
				ae := asAPIError(t, err)
				want := fmt.Sprintf("1 validation error detected: Value '%d' at '%s' failed to satisfy constraint: %s", tc.v, r.path, tc.constraint)
				if ae.Type != ErrTypeValidation || ae.Status != 400 || ae.Message != want {
					t.Errorf("got %s %d %q\nwant ValidationException 400 %q", ae.Type, ae.Status, ae.Message, want)
				}
			})
		}
		// Both ends are accepted (SQS scaling and Kafka pollers included).
		for _, v := range []int64{r.lo, r.hi} {
			t.Run(fmt.Sprintf("%s=%d accepted", r.path, v), func(t *testing.T) {
				e := newTestEngine(t)
				cfg := sourceBase(r.src)
				cfg.FunctionName = sp("f")
				r.set(&cfg, v)
				if r.path == "maximumRecordAgeInSeconds" && v == r.lo {
					v = -1
				}
				if _, err := e.Create(context.Background(), &cfg); err != nil {
					t.Errorf("value %d refused: %v", v, err)
				}
			})
		}
	}
}

func TestMultipleViolationsAreJoined(t *testing.T) {
	e := newTestEngine(t)
	cfg := sourceBase(SourceKinesis)
	cfg.FunctionName = sp("f")
	cfg.BatchSize = ip(0)
	cfg.ParallelizationFactor = ip(11)
	_, err := e.Create(context.Background(), &cfg)
	want := "2 validation errors detected: Value '0' at 'batchSize' failed to satisfy constraint: Member must have value greater than or equal to 1; " +
		"Value '11' at 'parallelizationFactor' failed to satisfy constraint: Member must have value less than or equal to 10"
	if ae := asAPIError(t, err); ae.Message != want {
		t.Errorf("got %q\nwant %q", ae.Message, want)
	}
}

// TestPerSourceFieldRestrictions refuses every member on every source that
// does not accept it.
func TestPerSourceFieldRestrictions(t *testing.T) {
	setters := map[string]func(*Config){
		"ParallelizationFactor":      func(c *Config) { c.ParallelizationFactor = ip(2) },
		"StartingPositionTimestamp":  func(c *Config) { f := 1.0; c.StartingPositionTimestamp = &f },
		"MaximumRecordAgeInSeconds":  func(c *Config) { c.MaximumRecordAgeInSeconds = ip(60) },
		"BisectBatchOnFunctionError": func(c *Config) { c.BisectBatchOnFunctionError = bp(true) },
		"MaximumRetryAttempts":       func(c *Config) { c.MaximumRetryAttempts = ip(1) },
		"TumblingWindowInSeconds":    func(c *Config) { c.TumblingWindowInSeconds = ip(10) },
		"Topics":                     func(c *Config) { c.Topics = []string{"tt"} },
		"Queues":                     func(c *Config) { c.Queues = []string{"q"} },
		"SourceAccessConfigurations": func(c *Config) {
			c.SourceAccessConfigurations = []SourceAccessConfiguration{{Type: sp("BASIC_AUTH"), URI: sp(secretArn)}}
		},
		"SelfManagedEventSource": func(c *Config) {
			c.SelfManagedEventSource = &SelfManagedEventSource{Endpoints: map[string][]string{"KAFKA_BOOTSTRAP_SERVERS": {"k:1"}}}
		},
		"FunctionResponseTypes": func(c *Config) { c.FunctionResponseTypes = []string{"ReportBatchItemFailures"} },
		"AmazonManagedKafkaEventSourceConfig": func(c *Config) {
			c.AmazonManagedKafkaEventSourceConfig = &KafkaEventSourceConfig{ConsumerGroupId: sp("g")}
		},
		"SelfManagedKafkaEventSourceConfig": func(c *Config) {
			c.SelfManagedKafkaEventSourceConfig = &KafkaEventSourceConfig{ConsumerGroupId: sp("g")}
		},
		"ScalingConfig":               func(c *Config) { c.ScalingConfig = &ScalingConfig{MaximumConcurrency: ip(5)} },
		"DocumentDBEventSourceConfig": func(c *Config) { c.DocumentDBEventSourceConfig = &DocumentDBEventSourceConfig{DatabaseName: sp("db")} },
		"FilterCriteria":              func(c *Config) { c.FilterCriteria = &FilterCriteria{Filters: []Filter{{Pattern: sp(`{"a":["b"]}`)}}} },
		"LoggingConfig":               func(c *Config) { c.LoggingConfig = &LoggingConfig{SystemLogLevel: sp("INFO")} },
		"ProvisionedPollerConfig":     func(c *Config) { c.ProvisionedPollerConfig = &ProvisionedPollerConfig{MinimumPollers: ip(2)} },
	}
	if len(setters) != len(sourceFields) {
		t.Fatalf("%d setters for %d restricted fields", len(setters), len(sourceFields))
	}
	for _, f := range sourceFields {
		for _, src := range allSources {
			allowed := false
			for _, s := range f.sources {
				allowed = allowed || s == src
			}
			if allowed {
				continue
			}
			t.Run(f.name+"/"+string(src), func(t *testing.T) {
				e := newTestEngine(t)
				cfg := sourceBase(src)
				cfg.FunctionName = sp("f")
				setters[f.name](&cfg)
				_, err := e.Create(context.Background(), &cfg)
				ae := asAPIError(t, err)
				want := "Unsupported " + f.name + " parameter for given event source mapping type."
				if ae.Type != ipv || ae.Status != 400 || ae.Message != want {
					t.Errorf("got %s %d %q, want %q", ae.Type, ae.Status, ae.Message, want)
				}
			})
		}
	}
}

func TestOtherSemanticRules(t *testing.T) {
	future := float64(time.Now().Add(time.Hour).Unix())
	past := 1.0
	withBase := func(src Source, mod func(*Config)) Config {
		c := sourceBase(src)
		mod(&c)
		return c
	}
	runErrCases(t, []errCase{
		{"StartingPosition on SQS", withBase(SourceSQS, func(c *Config) { c.StartingPosition = sp("LATEST") }), ipv, 400, "StartingPosition is not valid for SQS event sources."},
		{"StartingPosition on MQ", withBase(SourceMQ, func(c *Config) { c.StartingPosition = sp("LATEST") }), ipv, 400, "StartingPosition is not valid for MQ event sources."},
		{"OnFailure on SQS", withBase(SourceSQS, func(c *Config) {
			c.DestinationConfig = &DestinationConfig{OnFailure: &Destination{Destination: sp(sqsArn)}}
		}), ipv, 400, "Unsupported DestinationConfig parameter for given event source mapping type."},
		{"OnSuccess on Kinesis", withBase(SourceKinesis, func(c *Config) {
			c.DestinationConfig = &DestinationConfig{OnSuccess: &Destination{Destination: sp(sqsArn)}}
		}), ipv, 400, "Unsupported DestinationConfig parameter for given event source mapping type."},
		{"kafka destination on Kinesis", withBase(SourceKinesis, func(c *Config) {
			c.DestinationConfig = &DestinationConfig{OnFailure: &Destination{Destination: sp("kafka://dlq")}}
		}), ipv, 400, "Unsupported destination type for given event source mapping type: kafka://dlq"},
		{"FIFO batch over 10", Config{EventSourceArn: sp(fifoArn), BatchSize: ip(11), MaximumBatchingWindowInSeconds: ip(0)}, ipv, 400, "Batch size must be between 1 and 10 for FIFO queues."},
		{"FIFO batching window", Config{EventSourceArn: sp(fifoArn), MaximumBatchingWindowInSeconds: ip(5)}, ipv, 400, "Unsupported MaximumBatchingWindowInSeconds parameter for given event source mapping type."},
		{"record age 59", withBase(SourceKinesis, func(c *Config) { c.MaximumRecordAgeInSeconds = ip(59) }), ipv, 400, "MaximumRecordAgeInSeconds must be -1 or between 60 and 604800."},
		{"record age 0", withBase(SourceKinesis, func(c *Config) { c.MaximumRecordAgeInSeconds = ip(0) }), ipv, 400, "MaximumRecordAgeInSeconds must be -1 or between 60 and 604800."},
		{"AT_TIMESTAMP without timestamp", withBase(SourceKinesis, func(c *Config) { c.StartingPosition = sp("AT_TIMESTAMP") }), ipv, 400, "StartingPositionTimestamp must be set when StartingPosition is AT_TIMESTAMP."},
		{"AT_TIMESTAMP in the future", withBase(SourceKinesis, func(c *Config) { c.StartingPosition = sp("AT_TIMESTAMP"); c.StartingPositionTimestamp = &future }), ipv, 400, "StartingPositionTimestamp cannot be in the future."},
		{"timestamp without AT_TIMESTAMP", withBase(SourceKinesis, func(c *Config) { c.StartingPositionTimestamp = &past }), ipv, 400, "StartingPositionTimestamp can only be set when StartingPosition is AT_TIMESTAMP."},
		{"MSK without StartingPosition", withBase(SourceMSK, func(c *Config) { c.StartingPosition = nil }), ipv, 400, "1 validation error detected: Value null at 'startingPosition' failed to satisfy constraint: Member must not be null."},
		{"MSK without topics", withBase(SourceMSK, func(c *Config) { c.Topics = nil }), ipv, 400, "Required 'topics' parameter is missing."},
		{"MQ without queues", withBase(SourceMQ, func(c *Config) { c.Queues = nil }), ipv, 400, "Required 'queues' parameter is missing."},
		{"MQ without credentials", withBase(SourceMQ, func(c *Config) { c.SourceAccessConfigurations = nil }), ipv, 400, "Required 'sourceAccessConfigurations' parameter is missing."},
		{"MQ with VPC subnet only", withBase(SourceMQ, func(c *Config) {
			c.SourceAccessConfigurations = []SourceAccessConfiguration{{Type: sp("VPC_SUBNET"), URI: sp("subnet:subnet-1")}}
		}), ipv, 400, "Unsupported SourceAccessConfigurations type VPC_SUBNET for given event source mapping type."},
		{"DocumentDB without config", withBase(SourceDocumentDB, func(c *Config) { c.DocumentDBEventSourceConfig = nil }), ipv, 400, "Required 'documentDBEventSourceConfig.databaseName' parameter is missing."},
		{"too many filters", withBase(SourceSQS, func(c *Config) {
			c.FilterCriteria = &FilterCriteria{}
			for range 6 {
				c.FilterCriteria.Filters = append(c.FilterCriteria.Filters, Filter{Pattern: sp(`{"a":["b"]}`)})
			}
		}), ipv, 400, "The number of filters exceeds the limit. The maximum number of filters is 5."},
		{"ScalingConfig with ProvisionedPollerConfig", withBase(SourceSQS, func(c *Config) {
			c.ScalingConfig = &ScalingConfig{MaximumConcurrency: ip(5)}
			c.ProvisionedPollerConfig = &ProvisionedPollerConfig{MinimumPollers: ip(2)}
		}), ipv, 400, "ScalingConfig and ProvisionedPollerConfig cannot be used together."},
		{"SQS pollers under 2", withBase(SourceSQS, func(c *Config) { c.ProvisionedPollerConfig = &ProvisionedPollerConfig{MinimumPollers: ip(1)} }),
			ipv, 400, "MinimumPollers and MaximumPollers must be at least 2 for Amazon SQS event sources."},
		{"unrecognised ARN service", Config{EventSourceArn: sp("arn:aws:s3:::bucket")}, ipv, 400, "Unrecognized event source."},
		{"Kafka-only metric on SQS", withBase(SourceSQS, func(c *Config) { c.MetricsConfig = &MetricsConfig{Metrics: []string{"ErrorCount"}} }),
			ipv, 400, "Unsupported metric ErrorCount for given event source mapping type."},
	})
}

func TestShapeViolations(t *testing.T) {
	long := strings.Repeat("x", MaxPatternLength+1)
	withBase := func(src Source, mod func(*Config)) Config {
		c := sourceBase(src)
		mod(&c)
		return c
	}
	vmsg := func(value, path, constraint string) string {
		return "1 validation error detected: Value " + value + " at '" + path + "' failed to satisfy constraint: " + constraint
	}
	runErrCases(t, []errCase{
		{"bad event source arn", Config{EventSourceArn: sp("not-an-arn")}, ErrTypeValidation, 400,
			vmsg("'not-an-arn'", "eventSourceArn", "Member must satisfy regular expression pattern: "+patArn)},
		{"bad function name", Config{EventSourceArn: sp(sqsArn), FunctionName: sp("invalid:function:name")}, ErrTypeValidation, 400,
			vmsg("'invalid:function:name'", "functionName", "Member must satisfy regular expression pattern: "+patFunctionName)},
		{"pattern too long", withBase(SourceSQS, func(c *Config) { c.FilterCriteria = &FilterCriteria{Filters: []Filter{{Pattern: &long}}} }), ErrTypeValidation, 400,
			vmsg("'"+long+"'", "filterCriteria.filters.1.member.pattern", "Member must have length less than or equal to 4096")},
		{"two topics", withBase(SourceMSK, func(c *Config) { c.Topics = []string{"a", "b"} }), ErrTypeValidation, 400,
			vmsg("'[a, b]'", "topics", "Member must have length less than or equal to 1")},
		{"bad topic", withBase(SourceMSK, func(c *Config) { c.Topics = []string{".bad"} }), ErrTypeValidation, 400,
			vmsg("'.bad'", "topics.1.member", "Member must satisfy regular expression pattern: "+patTopic)},
		{"bad SAC type", withBase(SourceMQ, func(c *Config) {
			c.SourceAccessConfigurations = []SourceAccessConfiguration{{Type: sp("NOPE"), URI: sp(secretArn)}}
		}), ErrTypeValidation, 400, vmsg("'NOPE'", "sourceAccessConfigurations.1.member.type", enumConstraint(enumSACType))},
		{"bad response type", withBase(SourceSQS, func(c *Config) { c.FunctionResponseTypes = []string{"Nope"} }), ErrTypeValidation, 400,
			vmsg("'[Nope]'", "functionResponseTypes", "Member must satisfy constraint: [Member must satisfy enum value set: [ReportBatchItemFailures]]")},
		{"bad destination", withBase(SourceKinesis, func(c *Config) {
			c.DestinationConfig = &DestinationConfig{OnFailure: &Destination{Destination: sp("queue")}}
		}), ErrTypeValidation, 400, vmsg("'queue'", "destinationConfig.onFailure.destination", "Member must satisfy regular expression pattern: "+patDestination)},
		{"bad bootstrap server", withBase(SourceKafka, func(c *Config) {
			c.SelfManagedEventSource.Endpoints["KAFKA_BOOTSTRAP_SERVERS"] = []string{"no-port"}
		}), ErrTypeValidation, 400, vmsg("'no-port'", "selfManagedEventSource.endpoints.KAFKA_BOOTSTRAP_SERVERS.1.member", "Member must satisfy regular expression pattern: "+patEndpoint)},
		{"system collection", withBase(SourceDocumentDB, func(c *Config) { c.DocumentDBEventSourceConfig.CollectionName = sp("system.users") }), ErrTypeValidation, 400,
			vmsg("'system.users'", "documentDBEventSourceConfig.collectionName", "Member must satisfy regular expression pattern: "+patCollectionName)},
		{"bad database name", withBase(SourceDocumentDB, func(c *Config) { c.DocumentDBEventSourceConfig.DatabaseName = sp("a.b") }), ErrTypeValidation, 400,
			vmsg("'a.b'", "documentDBEventSourceConfig.databaseName", "Member must satisfy regular expression pattern: "+patDatabaseName)},
		{"bad full document", withBase(SourceDocumentDB, func(c *Config) { c.DocumentDBEventSourceConfig.FullDocument = sp("All") }), ErrTypeValidation, 400,
			vmsg("'All'", "documentDBEventSourceConfig.fullDocument", "Member must satisfy enum value set: [UpdateLookup, Default]")},
		{"bad log level", withBase(SourceKafka, func(c *Config) { c.LoggingConfig = &LoggingConfig{SystemLogLevel: sp("TRACE")} }), ErrTypeValidation, 400,
			vmsg("'TRACE'", "loggingConfig.systemLogLevel", "Member must satisfy enum value set: [DEBUG, INFO, WARN]")},
		{"bad KMS key", withBase(SourceSQS, func(c *Config) { c.KMSKeyArn = sp("key") }), ErrTypeValidation, 400,
			vmsg("'key'", "kMSKeyArn", "Member must satisfy regular expression pattern: "+patKMSKeyArn)},
		{"bad consumer group", withBase(SourceKafka, func(c *Config) {
			c.SelfManagedKafkaEventSourceConfig = &KafkaEventSourceConfig{ConsumerGroupId: sp("a b")}
		}), ErrTypeValidation, 400, vmsg("'a b'", "selfManagedKafkaEventSourceConfig.consumerGroupId", "Member must satisfy regular expression pattern: "+patURI)},
		{"no function name", Config{EventSourceArn: sp(sqsArn), FunctionName: sp("")}, ErrTypeValidation, 400,
			vmsg("''", "functionName", "Member must have length greater than or equal to 1")},
	})
}

func TestCollectionNameRule(t *testing.T) {
	for name, ok := range map[string]bool{"orders": true, "_x": true, "9a": true, "system.x": false, "systemx": true, "-a": false, "a$b": false, "": false} {
		if got := validCollectionName(name); got != ok {
			t.Errorf("validCollectionName(%q) = %v, want %v", name, got, ok)
		}
	}
}
