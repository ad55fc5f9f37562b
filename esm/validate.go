package esm

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits that are quotas rather than shape constraints.
const (
	// DefaultMaxFilters is the default number of filters a mapping may have
	// (a quota increase allows up to 10; spec 7.2, FLT-2).
	DefaultMaxFilters = 5
	// MaxPatternLength is the longest Filter.Pattern, in characters.
	MaxPatternLength = 4096
	// MaxArnLength bounds the ARNs the model leaves unbounded (shape Arn:
	// EventSourceArn, schema registry access configs; KMSKeyArn). The Lambda
	// model gives them a pattern but no length; 2048 is the longest ARN IAM
	// and Kinesis (StreamARN) accept, so no real resource is refused.
	MaxArnLength = 2048
)

// Model patterns, as AWS prints them in ValidationException messages. They
// are compiled full-match (wrapped in ^(?:...)$) for checking.
const (
	patArn            = `arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\-])+:([a-z]{2}(-gov)?-[a-z]+-\d{1})?:(\d{12})?:(.*)`
	patFunctionName   = `(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:)?(\d{12}:)?(function:)?([a-zA-Z0-9-_\.]+)(:(\$LATEST(\.PUBLISHED)?|[a-zA-Z0-9-_]+))?`
	patTopic          = `[^.]([a-zA-Z0-9\-_.]+)`
	patURI            = `[a-zA-Z0-9-\/*:_+=.@-]*`
	patDestination    = `$|kafka://([^.]([a-zA-Z0-9\-_.]{0,248}))|arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\-])+:([a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1})?:(\d{12})?:(.*)`
	patKMSKeyArn      = `(arn:(aws[a-zA-Z-]*)?:[a-z0-9-.]+:.*)|()`
	patEndpoint       = `(([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9\-]*[a-zA-Z0-9])\.)*([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9\-]*[A-Za-z0-9]):[0-9]{1,5}`
	patDatabaseName   = `[^ /\.$\x22]*`
	patCollectionName = `(^(?!(system\x2e)))(^[_a-zA-Z0-9])([^$]*)`
	patPollerGroup    = `[a-zA-Z0-9-_]*`
	patQueue          = `[\s\S]*`
)

func fullMatch(p string) *regexp.Regexp { return regexp.MustCompile(`^(?:` + p + `)$`) }

var (
	// reArn is patArn with the region forms the live service takes (as
	// DestinationArn and NamespacedFunctionName spell them): the ISO regions
	// (us-iso-east-1, us-isob-east-1, eu-isoe-west-1, ...) and the eusc-
	// prefix of the European Sovereign Cloud (aws-eusc). Refusals still print
	// the model's pattern, as AWS does.
	reArn          = regexp.MustCompile(`^(?:arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\-])+:((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1})?:(\d{12})?:(.*))$`)
	reTopic        = fullMatch(patTopic)
	reURI          = fullMatch(patURI)
	reDestination  = regexp.MustCompile(`^(?:|kafka://([^.]([a-zA-Z0-9\-_.]{0,248}))|arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\-])+:((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1})?:(\d{12})?:(.*))$`)
	reKMSKeyArn    = fullMatch(patKMSKeyArn)
	reEndpoint     = fullMatch(patEndpoint)
	reDatabaseName = fullMatch(patDatabaseName)
	rePollerGroup  = fullMatch(patPollerGroup)
)

// validCollectionName codes the CollectionName pattern by hand: RE2 has no
// lookahead for "must not start with system.".
func validCollectionName(s string) bool {
	if strings.HasPrefix(s, "system.") || s == "" {
		return false
	}
	c := s[0]
	if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
		return false
	}
	return !strings.Contains(s[1:], "$")
}

// Enumerations, in the order AWS prints them.
var (
	enumStartingPosition = []string{"LATEST", "AT_TIMESTAMP", "TRIM_HORIZON"}
	enumSACType          = []string{"BASIC_AUTH", "VPC_SUBNET", "VPC_SECURITY_GROUP", "SASL_SCRAM_512_AUTH", "SASL_SCRAM_256_AUTH", "VIRTUAL_HOST", "CLIENT_CERTIFICATE_TLS_AUTH", "SERVER_ROOT_CA_CERTIFICATE"}
	enumResponseType     = []string{"ReportBatchItemFailures"}
	enumEndpointKey      = []string{"KAFKA_BOOTSTRAP_SERVERS"}
	enumFullDocument     = []string{"UpdateLookup", "Default"}
	enumMetric           = []string{"EventCount", "ErrorCount", "KafkaMetrics"}
	enumLogLevel         = []string{"DEBUG", "INFO", "WARN"}
	enumRecordFormat     = []string{"JSON", "SOURCE"}
	enumSchemaAttribute  = []string{"KEY", "VALUE"}
	enumSchemaAccessType = []string{"BASIC_AUTH", "CLIENT_CERTIFICATE_TLS_AUTH", "SERVER_ROOT_CA_CERTIFICATE"}
)

func enumConstraint(values []string) string {
	return "Member must satisfy enum value set: [" + strings.Join(values, ", ") + "]"
}

// checker accumulates front-end violations.
type checker struct{ v violations }

func (c *checker) intRange(p *int64, path string, lo, hi int64) {
	if p == nil {
		return
	}
	switch {
	case *p < lo:
		c.v.add(quote(*p), path, fmt.Sprintf("Member must have value greater than or equal to %d", lo))
	case *p > hi:
		c.v.add(quote(*p), path, fmt.Sprintf("Member must have value less than or equal to %d", hi))
	}
}

// str checks length (in characters) and, when re is set, the pattern.
func (c *checker) str(p *string, path string, lo, hi int, re *regexp.Regexp, pat string) {
	if p == nil {
		return
	}
	n := utf8.RuneCountInString(*p)
	switch {
	case n < lo:
		c.v.add(quote(*p), path, fmt.Sprintf("Member must have length greater than or equal to %d", lo))
	case n > hi:
		c.v.add(quote(*p), path, fmt.Sprintf("Member must have length less than or equal to %d", hi))
	case re != nil && !re.MatchString(*p):
		c.v.add(quote(*p), path, "Member must satisfy regular expression pattern: "+pat)
	}
}

func (c *checker) enum(p *string, path string, values []string) {
	if p != nil && !slices.Contains(values, *p) {
		c.v.add(quote(*p), path, enumConstraint(values))
	}
}

func (c *checker) listLen(n int, present bool, path string, value any, lo, hi int) bool {
	if !present {
		return true
	}
	switch {
	case n < lo:
		c.v.add(quote(value), path, fmt.Sprintf("Member must have length greater than or equal to %d", lo))
		return false
	case n > hi:
		c.v.add(quote(value), path, fmt.Sprintf("Member must have length less than or equal to %d", hi))
		return false
	}
	return true
}

func member(path string, i int, field string) string {
	s := fmt.Sprintf("%s.%d.member", path, i+1)
	if field != "" {
		s += "." + field
	}
	return s
}

// checkShape applies the model's shape constraints (length, range, pattern,
// enum) that the AWS front end answers with ValidationException. These are
// source independent and run before any semantic rule.
func checkShape(cfg *Config) *Error {
	var c checker
	if cfg.FunctionName != nil {
		fn := *cfg.FunctionName
		// The model allows 256 characters, but a bare name is limited to 64
		// (spec 11): AWS reports it as a length violation.
		if !strings.Contains(fn, ":") && len(fn) > 64 {
			c.v.add(quote(fn), "functionName", "Member must have length less than or equal to 64")
		} else {
			c.str(cfg.FunctionName, "functionName", 1, 256, functionNameRe, patFunctionName)
		}
	}
	c.str(cfg.EventSourceArn, "eventSourceArn", 0, MaxArnLength, reArn, patArn)
	c.intRange(cfg.BatchSize, "batchSize", 1, 10000)
	c.intRange(cfg.MaximumBatchingWindowInSeconds, "maximumBatchingWindowInSeconds", 0, 300)
	c.intRange(cfg.ParallelizationFactor, "parallelizationFactor", 1, 10)
	// The recorded AWS answer to a missing StartingPosition on a stream is an
	// InvalidParameterValueException (checked semantically, per source); a
	// value outside the enum is a ValidationException.
	c.enum(cfg.StartingPosition, "startingPosition", enumStartingPosition)
	c.intRange(cfg.MaximumRecordAgeInSeconds, "maximumRecordAgeInSeconds", -1, 604800)
	c.intRange(cfg.MaximumRetryAttempts, "maximumRetryAttempts", -1, 10000)
	c.intRange(cfg.TumblingWindowInSeconds, "tumblingWindowInSeconds", 0, 900)
	if c.listLen(len(cfg.Topics), cfg.Topics != nil, "topics", cfg.Topics, 1, 1) {
		for i := range cfg.Topics {
			c.str(&cfg.Topics[i], member("topics", i, ""), 1, 249, reTopic, patTopic)
		}
	}
	if c.listLen(len(cfg.Queues), cfg.Queues != nil, "queues", cfg.Queues, 1, 1) {
		for i := range cfg.Queues {
			c.str(&cfg.Queues[i], member("queues", i, ""), 1, 1000, nil, patQueue)
		}
	}
	if c.listLen(len(cfg.SourceAccessConfigurations), cfg.SourceAccessConfigurations != nil, "sourceAccessConfigurations", "[...]", 0, 22) {
		for i, s := range cfg.SourceAccessConfigurations {
			c.enum(s.Type, member("sourceAccessConfigurations", i, "type"), enumSACType)
			c.str(s.URI, member("sourceAccessConfigurations", i, "uRI"), 1, 200, reURI, patURI)
		}
	}
	if cfg.SelfManagedEventSource != nil {
		eps := cfg.SelfManagedEventSource.Endpoints
		c.listLen(len(eps), eps != nil, "selfManagedEventSource.endpoints", "{...}", 1, 2)
		for k, list := range eps {
			k := k
			c.enum(&k, "selfManagedEventSource.endpoints", enumEndpointKey)
			if c.listLen(len(list), true, "selfManagedEventSource.endpoints", list, 1, 10) {
				for i := range list {
					c.str(&list[i], member("selfManagedEventSource.endpoints."+k, i, ""), 1, 300, reEndpoint, patEndpoint)
				}
			}
		}
	}
	if c.listLen(len(cfg.FunctionResponseTypes), cfg.FunctionResponseTypes != nil, "functionResponseTypes", cfg.FunctionResponseTypes, 0, 1) {
		for _, t := range cfg.FunctionResponseTypes {
			if !slices.Contains(enumResponseType, t) {
				c.v.add(quote(cfg.FunctionResponseTypes), "functionResponseTypes",
					"Member must satisfy constraint: ["+enumConstraint(enumResponseType)+"]")
			}
		}
	}
	checkKafkaConfig(&c, cfg.AmazonManagedKafkaEventSourceConfig, "amazonManagedKafkaEventSourceConfig")
	checkKafkaConfig(&c, cfg.SelfManagedKafkaEventSourceConfig, "selfManagedKafkaEventSourceConfig")
	if cfg.ScalingConfig != nil {
		c.intRange(cfg.ScalingConfig.MaximumConcurrency, "scalingConfig.maximumConcurrency", 2, 1000)
	}
	if d := cfg.DestinationConfig; d != nil {
		if d.OnFailure != nil {
			c.str(d.OnFailure.Destination, "destinationConfig.onFailure.destination", 0, 350, reDestination, patDestination)
		}
		if d.OnSuccess != nil {
			c.str(d.OnSuccess.Destination, "destinationConfig.onSuccess.destination", 0, 350, reDestination, patDestination)
		}
	}
	if f := cfg.FilterCriteria; f != nil {
		for i, flt := range f.Filters {
			c.str(flt.Pattern, member("filterCriteria.filters", i, "pattern"), 0, MaxPatternLength, nil, "")
		}
	}
	if d := cfg.DocumentDBEventSourceConfig; d != nil {
		c.str(d.DatabaseName, "documentDBEventSourceConfig.databaseName", 1, 63, reDatabaseName, patDatabaseName)
		if d.CollectionName != nil {
			n := len([]rune(*d.CollectionName))
			switch {
			case n < 1:
				c.v.add(quote(*d.CollectionName), "documentDBEventSourceConfig.collectionName", "Member must have length greater than or equal to 1")
			case n > 57:
				c.v.add(quote(*d.CollectionName), "documentDBEventSourceConfig.collectionName", "Member must have length less than or equal to 57")
			case !validCollectionName(*d.CollectionName):
				c.v.add(quote(*d.CollectionName), "documentDBEventSourceConfig.collectionName", "Member must satisfy regular expression pattern: "+patCollectionName)
			}
		}
		c.enum(d.FullDocument, "documentDBEventSourceConfig.fullDocument", enumFullDocument)
	}
	c.str(cfg.KMSKeyArn, "kMSKeyArn", 0, MaxArnLength, reKMSKeyArn, patKMSKeyArn)
	if m := cfg.MetricsConfig; m != nil {
		if c.listLen(len(m.Metrics), true, "metricsConfig.metrics", m.Metrics, 0, 3) {
			for _, v := range m.Metrics {
				if !slices.Contains(enumMetric, v) {
					c.v.add(quote(m.Metrics), "metricsConfig.metrics", "Member must satisfy constraint: ["+enumConstraint(enumMetric)+"]")
					break
				}
			}
		}
	}
	if l := cfg.LoggingConfig; l != nil {
		c.enum(l.SystemLogLevel, "loggingConfig.systemLogLevel", enumLogLevel)
	}
	c.tags(cfg.Tags, "tags")
	if p := cfg.ProvisionedPollerConfig; p != nil {
		c.intRange(p.MinimumPollers, "provisionedPollerConfig.minimumPollers", 1, 200)
		c.intRange(p.MaximumPollers, "provisionedPollerConfig.maximumPollers", 1, 2000)
		c.str(p.PollerGroupName, "provisionedPollerConfig.pollerGroupName", 0, 128, rePollerGroup, patPollerGroup)
	}
	return c.v.err()
}

func checkKafkaConfig(c *checker, k *KafkaEventSourceConfig, path string) {
	if k == nil {
		return
	}
	c.str(k.ConsumerGroupId, path+".consumerGroupId", 1, 200, reURI, patURI)
	if r := k.SchemaRegistryConfig; r != nil {
		p := path + ".schemaRegistryConfig"
		c.str(r.SchemaRegistryURI, p+".schemaRegistryURI", 1, 10000, reURI, patURI)
		c.enum(r.EventRecordFormat, p+".eventRecordFormat", enumRecordFormat)
		for i, a := range r.AccessConfigs {
			c.enum(a.Type, member(p+".accessConfigs", i, "type"), enumSchemaAccessType)
			c.str(a.URI, member(p+".accessConfigs", i, "uRI"), 0, MaxArnLength, reArn, patArn)
		}
		for i, v := range r.SchemaValidationConfigs {
			c.enum(v.Attribute, member(p+".schemaValidationConfigs", i, "attribute"), enumSchemaAttribute)
		}
	}
}

// field names a Config member for the per-source acceptance table.
type field struct {
	name    string // PascalCase, as AWS names it in "Unsupported X parameter" messages
	present func(*Config) bool
	sources []Source
}

var (
	allSources = []Source{SourceKinesis, SourceDynamoDB, SourceSQS, SourceMSK, SourceKafka, SourceMQ, SourceDocumentDB}
	streams    = []Source{SourceKinesis, SourceDynamoDB}
	kafkas     = []Source{SourceMSK, SourceKafka}
)

func join(groups ...[]Source) []Source {
	var out []Source
	for _, g := range groups {
		out = append(out, g...)
	}
	return out
}

// sourceFields says which sources accept each optional member (spec 3; the
// "Applies to" column, current API). A member present for a source that does
// not take it is refused as AWS refuses it:
// "Unsupported <Member> parameter for given event source mapping type."
// (recorded for DestinationConfig; the same wording is reported by users for
// ParallelizationFactor and MaximumBatchingWindowInSeconds).
var sourceFields = []field{
	{"ParallelizationFactor", func(c *Config) bool { return c.ParallelizationFactor != nil }, streams},
	{"StartingPositionTimestamp", func(c *Config) bool { return c.StartingPositionTimestamp != nil }, []Source{SourceKinesis, SourceMSK, SourceKafka, SourceDocumentDB}},
	{"MaximumRecordAgeInSeconds", func(c *Config) bool { return c.MaximumRecordAgeInSeconds != nil }, join(streams, kafkas)},
	{"BisectBatchOnFunctionError", func(c *Config) bool { return c.BisectBatchOnFunctionError != nil }, join(streams, kafkas)},
	{"MaximumRetryAttempts", func(c *Config) bool { return c.MaximumRetryAttempts != nil }, join(streams, kafkas)},
	{"TumblingWindowInSeconds", func(c *Config) bool { return c.TumblingWindowInSeconds != nil }, streams},
	{"Topics", func(c *Config) bool { return c.Topics != nil }, kafkas},
	{"Queues", func(c *Config) bool { return c.Queues != nil }, []Source{SourceMQ}},
	{"SourceAccessConfigurations", func(c *Config) bool { return len(c.SourceAccessConfigurations) > 0 }, []Source{SourceMQ, SourceKafka, SourceMSK, SourceDocumentDB}},
	{"SelfManagedEventSource", func(c *Config) bool { return c.SelfManagedEventSource != nil }, []Source{SourceKafka}},
	{"FunctionResponseTypes", func(c *Config) bool { return len(c.FunctionResponseTypes) > 0 }, join(streams, []Source{SourceSQS}, kafkas)},
	{"AmazonManagedKafkaEventSourceConfig", func(c *Config) bool { return c.AmazonManagedKafkaEventSourceConfig != nil }, []Source{SourceMSK}},
	{"SelfManagedKafkaEventSourceConfig", func(c *Config) bool { return c.SelfManagedKafkaEventSourceConfig != nil }, []Source{SourceKafka}},
	{"ScalingConfig", func(c *Config) bool { return c.ScalingConfig != nil }, []Source{SourceSQS}},
	{"DocumentDBEventSourceConfig", func(c *Config) bool { return c.DocumentDBEventSourceConfig != nil }, []Source{SourceDocumentDB}},
	{"FilterCriteria", func(c *Config) bool { return c.FilterCriteria != nil && len(c.FilterCriteria.Filters) > 0 }, join(streams, []Source{SourceSQS}, kafkas, []Source{SourceMQ})},
	{"LoggingConfig", func(c *Config) bool { return c.LoggingConfig != nil }, kafkas},
	{"ProvisionedPollerConfig", func(c *Config) bool { return c.ProvisionedPollerConfig != nil }, []Source{SourceSQS, SourceMSK, SourceKafka, SourceMQ}},
}

func unsupported(name string) *Error {
	return invalidParam("Unsupported %s parameter for given event source mapping type.", name)
}

// checkSource applies the semantic rules of one source to the effective
// (merged, defaulted) configuration. arn is the event source ARN ("" for
// self-managed Kafka). now is used for the StartingPositionTimestamp check.
//
// AWS reports only the first rule broken, so the rule groups run in AWS's
// order and the first error wins.
func checkSource(src Source, cfg *Config, arn string, maxFilters int, now time.Time) *Error {
	sc := sourceCheck{src: src, cfg: cfg, arn: arn, maxFilters: maxFilters, now: now}
	for _, rule := range []func() *Error{
		sc.destination,
		sc.applicable,
		sc.startingPosition,
		sc.recordAge,
		sc.sqs,
		sc.pollers,
		sc.required,
		sc.access,
		sc.filters,
	} {
		if err := rule(); err != nil {
			return err
		}
	}
	return nil
}

// sourceCheck is the input of checkSource's rule groups.
type sourceCheck struct {
	src        Source
	cfg        *Config
	arn        string
	maxFilters int
	now        time.Time
}

// destination comes first: AWS answers it before the function lookup
// (test_event_source_mapping_exceptions).
func (sc sourceCheck) destination() *Error {
	d := sc.cfg.DestinationConfig
	if d == nil {
		return nil
	}
	if d.OnSuccess != nil {
		return unsupported("DestinationConfig")
	}
	if d.OnFailure != nil && d.OnFailure.Destination != nil && *d.OnFailure.Destination != "" {
		dest := *d.OnFailure.Destination
		types, ok := onFailureTypes[sc.src]
		if !ok {
			return unsupported("DestinationConfig")
		}
		if !slices.Contains(types, destinationType(dest)) {
			if strings.HasPrefix(dest, "kafka://") {
				return invalidParam("Unsupported destination type for given event source mapping type: %s", dest)
			}
			// AWS's wording for a destination ARN of a kind it does not
			// send to (observed for an EventBridge bus as an async-invoke
			// destination).
			return invalidParam("The destination ARN %s is invalid.", dest)
		}
	}
	return nil
}

// onFailureTypes says where each source can send the records it gives up on
// (Lambda guide, "Retaining discarded batches": Kinesis and DynamoDB Streams
// send to SQS, SNS or S3; MSK and self-managed Kafka also to a Kafka topic,
// kafka://<topic>). A source absent from the table takes no OnFailure
// destination at all (SQS, Amazon MQ, DocumentDB: recorded for SQS).
// Entries are the ARN's service, or "kafka" for kafka://.
var onFailureTypes = map[Source][]string{
	SourceKinesis:  {"sqs", "sns", "s3"},
	SourceDynamoDB: {"sqs", "sns", "s3"},
	SourceMSK:      {"sqs", "sns", "s3", "kafka"},
	SourceKafka:    {"sqs", "sns", "s3", "kafka"},
}

// destinationType is the kind of an OnFailure destination: the service of
// an ARN, or "kafka" for kafka://<topic>.
func destinationType(dest string) string {
	if strings.HasPrefix(dest, "kafka://") {
		return "kafka"
	}
	a, _ := ParseARN(dest) // the shape check admitted only ARNs and kafka://
	return a.Service
}

// applicable refuses parameters, and values of them, that the source does
// not take.
func (sc sourceCheck) applicable() *Error {
	src, cfg := sc.src, sc.cfg
	if cfg.StartingPosition != nil && !(src.Stream() || src.IsKafka() || src == SourceDocumentDB) {
		// Wording reported from AWS for SQS; the same sentence is used for MQ.
		return invalidParam("StartingPosition is not valid for %s event sources.", sourceLabel(src))
	}
	if cfg.MaximumBatchingWindowInSeconds != nil && src == SourceSQS && IsFIFOQueue(sc.arn) && *cfg.MaximumBatchingWindowInSeconds != 0 {
		return unsupported("MaximumBatchingWindowInSeconds")
	}
	if src == SourceDynamoDB && cfg.StartingPosition != nil && *cfg.StartingPosition == "AT_TIMESTAMP" {
		return invalidParam("Unsupported starting position for arn type: %s", sc.arn)
	}
	for _, f := range sourceFields {
		if f.present(cfg) && !slices.Contains(f.sources, src) {
			return unsupported(f.name)
		}
	}
	if cfg.MetricsConfig != nil && !src.IsKafka() {
		for _, m := range cfg.MetricsConfig.Metrics {
			if m != "EventCount" {
				return invalidParam("Unsupported metric %s for given event source mapping type.", m)
			}
		}
	}
	return nil
}

// startingPosition: required by streams, MSK and DocumentDB, and
// StartingPositionTimestamp goes with AT_TIMESTAMP only. (DynamoDB's refusal
// of AT_TIMESTAMP comes earlier, in applicable.)
func (sc sourceCheck) startingPosition() *Error {
	cfg := sc.cfg
	switch sc.src {
	case SourceKinesis, SourceDynamoDB, SourceMSK, SourceDocumentDB:
		if cfg.StartingPosition == nil {
			return invalidParam("1 validation error detected: Value null at 'startingPosition' failed to satisfy constraint: Member must not be null.")
		}
	}
	if cfg.StartingPosition != nil && *cfg.StartingPosition == "AT_TIMESTAMP" {
		if cfg.StartingPositionTimestamp == nil {
			return invalidParam("StartingPositionTimestamp must be set when StartingPosition is AT_TIMESTAMP.")
		}
		if err := checkTimestamp(*cfg.StartingPositionTimestamp, sc.now); err != nil {
			return err
		}
	} else if cfg.StartingPositionTimestamp != nil {
		return invalidParam("StartingPositionTimestamp can only be set when StartingPosition is AT_TIMESTAMP.")
	}
	return nil
}

func (sc sourceCheck) recordAge() *Error {
	if a := sc.cfg.MaximumRecordAgeInSeconds; a != nil && *a >= 0 && *a < 60 {
		// The model declares -1..604800, but AWS refuses 0..59 (spec 3, 13).
		return invalidParam("MaximumRecordAgeInSeconds must be -1 or between 60 and 604800.")
	}
	return nil
}

// sqs: batch size limits of FIFO and standard queues, and one way to scale.
func (sc sourceCheck) sqs() *Error {
	cfg := sc.cfg
	if sc.src != SourceSQS {
		return nil
	}
	fifo := IsFIFOQueue(sc.arn)
	if fifo && cfg.BatchSize != nil && *cfg.BatchSize > 10 {
		return invalidParam("Batch size must be between 1 and 10 for FIFO queues.")
	}
	// Recorded on create and update (TestSQSEventSourceMapping).
	if !fifo && cfg.BatchSize != nil && *cfg.BatchSize > 10 &&
		(cfg.MaximumBatchingWindowInSeconds == nil || *cfg.MaximumBatchingWindowInSeconds < 1) {
		return invalidParam("Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10")
	}
	if cfg.ScalingConfig != nil && cfg.ProvisionedPollerConfig != nil {
		return invalidParam("ScalingConfig and ProvisionedPollerConfig cannot be used together.")
	}
	return nil
}

// pollers checks ProvisionedPollerConfig.
func (sc sourceCheck) pollers() *Error {
	p := sc.cfg.ProvisionedPollerConfig
	if p == nil {
		return nil
	}
	if p.MinimumPollers != nil && p.MaximumPollers != nil && *p.MinimumPollers > *p.MaximumPollers {
		return invalidParam("MinimumPollers must be less than or equal to MaximumPollers.")
	}
	if sc.src == SourceSQS {
		if p.MinimumPollers != nil && *p.MinimumPollers < 2 || p.MaximumPollers != nil && *p.MaximumPollers < 2 {
			return invalidParam("MinimumPollers and MaximumPollers must be at least 2 for Amazon SQS event sources.")
		}
	}
	if p.PollerGroupName != nil && !sc.src.IsKafka() {
		return unsupported("PollerGroupName")
	}
	return nil
}

// required: what the source reads (topics, queues, database).
func (sc sourceCheck) required() *Error {
	cfg := sc.cfg
	switch sc.src {
	case SourceMSK, SourceKafka:
		if len(cfg.Topics) == 0 {
			return invalidParam("Required 'topics' parameter is missing.")
		}
	case SourceMQ:
		if len(cfg.Queues) == 0 {
			return invalidParam("Required 'queues' parameter is missing.")
		}
	case SourceDocumentDB:
		if cfg.DocumentDBEventSourceConfig == nil || cfg.DocumentDBEventSourceConfig.DatabaseName == nil {
			return invalidParam("Required 'documentDBEventSourceConfig.databaseName' parameter is missing.")
		}
	}
	return nil
}

// access checks SourceAccessConfigurations: present where required, each
// complete and of a type the source uses, with the credentials MQ and
// DocumentDB need.
func (sc sourceCheck) access() *Error {
	src, sacs := sc.src, sc.cfg.SourceAccessConfigurations
	switch src {
	case SourceKafka, SourceMQ, SourceDocumentDB:
		if len(sacs) == 0 {
			return invalidParam("Required 'sourceAccessConfigurations' parameter is missing.")
		}
	}
	for _, s := range sacs {
		if s.Type == nil || s.URI == nil {
			return invalidParam("Required 'sourceAccessConfigurations.type' and 'sourceAccessConfigurations.uri' parameters are missing.")
		}
		if !sacAllowed(src, *s.Type) {
			return invalidParam("Unsupported SourceAccessConfigurations type %s for given event source mapping type.", *s.Type)
		}
	}
	if src == SourceMQ || src == SourceDocumentDB {
		if !hasSAC(sacs, "BASIC_AUTH") {
			return invalidParam("Required 'sourceAccessConfigurations' of type BASIC_AUTH is missing.")
		}
	}
	return nil
}

// filters checks the number of filters against the quota, and that each
// has a pattern.
func (sc sourceCheck) filters() *Error {
	f := sc.cfg.FilterCriteria
	if f == nil {
		return nil
	}
	if len(f.Filters) > sc.maxFilters {
		return invalidParam("The number of filters exceeds the limit. The maximum number of filters is %d.", sc.maxFilters)
	}
	for _, flt := range f.Filters {
		if flt.Pattern == nil {
			return invalidParam("Invalid filter pattern definition.")
		}
	}
	return nil
}

func hasSAC(list []SourceAccessConfiguration, typ string) bool {
	for _, s := range list {
		if s.Type != nil && *s.Type == typ {
			return true
		}
	}
	return false
}

// sacAllowed is the "Used by" column of spec 7.4.
func sacAllowed(src Source, typ string) bool {
	switch src {
	case SourceMQ:
		return typ == "BASIC_AUTH" || typ == "VIRTUAL_HOST"
	case SourceDocumentDB:
		return typ == "BASIC_AUTH"
	case SourceMSK:
		return typ == "SASL_SCRAM_512_AUTH" || typ == "CLIENT_CERTIFICATE_TLS_AUTH"
	case SourceKafka:
		switch typ {
		case "BASIC_AUTH", "VPC_SUBNET", "VPC_SECURITY_GROUP", "SASL_SCRAM_256_AUTH", "SASL_SCRAM_512_AUTH",
			"CLIENT_CERTIFICATE_TLS_AUTH", "SERVER_ROOT_CA_CERTIFICATE":
			return true
		}
	}
	return false
}

func sourceLabel(s Source) string {
	switch s {
	case SourceSQS:
		return "SQS"
	case SourceMQ:
		return "MQ"
	}
	return string(s)
}

// checkTimestamp refuses a StartingPositionTimestamp after now. The
// comparison is in float64 seconds, so no value can wrap around int64 and
// pass as a past time (1e300 or +Inf are in the future). A value before the
// epoch, or not a number, names no time a source can start from (and the
// pollers turn the timestamp into a time.Time); JSON carries no NaN or
// infinity, so these come only from a mappings file or a Go caller.
func checkTimestamp(sec float64, now time.Time) *Error {
	nowSec := float64(now.UnixNano()) / 1e9
	switch {
	case math.IsNaN(sec) || sec < 0:
		return invalidParam("StartingPositionTimestamp must be a time after 1970-01-01T00:00:00Z: %v", sec)
	case sec > nowSec:
		return invalidParam("StartingPositionTimestamp cannot be in the future.")
	}
	return nil
}

// maxEpochMilli is the largest number of milliseconds a time.Time made by
// time.UnixMilli holds without overflow, as a float64.
const maxEpochMilli = float64(math.MaxInt64)

// epochToTime converts epoch seconds (with a fraction) to a time, saturating
// instead of wrapping for values outside int64 milliseconds.
func epochToTime(sec float64) time.Time {
	ms := math.Round(sec * 1000)
	switch {
	case math.IsNaN(ms):
		ms = 0
	case ms >= maxEpochMilli:
		return time.UnixMilli(math.MaxInt64).UTC()
	case ms <= -maxEpochMilli:
		return time.UnixMilli(math.MinInt64).UTC()
	}
	return time.UnixMilli(int64(ms)).UTC()
}
