package esm

import (
	"regexp"
	"strings"
)

// Source is the kind of event source a mapping reads.
type Source string

// The event sources of spec section 9.
const (
	SourceKinesis    Source = "kinesis"
	SourceDynamoDB   Source = "dynamodb"
	SourceSQS        Source = "sqs"
	SourceMSK        Source = "msk"   // Amazon MSK, EventSourceArn arn:aws:kafka:...
	SourceKafka      Source = "kafka" // self-managed Apache Kafka (SelfManagedEventSource)
	SourceMQ         Source = "mq"    // Amazon MQ (ActiveMQ or RabbitMQ)
	SourceDocumentDB Source = "documentdb"
)

// Stream reports whether s is Kinesis or DynamoDB Streams.
func (s Source) Stream() bool { return s == SourceKinesis || s == SourceDynamoDB }

// IsKafka reports whether s is MSK or self-managed Kafka.
func (s Source) IsKafka() bool { return s == SourceMSK || s == SourceKafka }

// ARN is a parsed Amazon Resource Name.
type ARN struct {
	Partition, Service, Region, Account, Resource string
}

// ParseARN splits s into its parts; ok is false when s is not an ARN.
func ParseARN(s string) (ARN, bool) {
	parts := strings.SplitN(s, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" {
		return ARN{}, false
	}
	return ARN{Partition: parts[1], Service: parts[2], Region: parts[3], Account: parts[4], Resource: parts[5]}, true
}

// DetectSource returns the source kind of an event source ARN, or ok=false
// when the ARN names no supported source.
func DetectSource(eventSourceArn string) (Source, bool) {
	a, ok := ParseARN(eventSourceArn)
	if !ok {
		return "", false
	}
	switch a.Service {
	case "kinesis":
		if strings.HasPrefix(a.Resource, "stream/") {
			return SourceKinesis, true
		}
	case "dynamodb":
		if strings.HasPrefix(a.Resource, "table/") && strings.Contains(a.Resource, "/stream/") {
			return SourceDynamoDB, true
		}
	case "sqs":
		if a.Resource != "" {
			return SourceSQS, true
		}
	case "kafka":
		return SourceMSK, true
	case "mq":
		return SourceMQ, true
	case "rds":
		if strings.HasPrefix(a.Resource, "cluster:") {
			return SourceDocumentDB, true
		}
	}
	return "", false
}

// IsFIFOQueue reports whether an SQS queue ARN names a FIFO queue.
func IsFIFOQueue(queueArn string) bool { return strings.HasSuffix(queueArn, ".fifo") }

// PartitionForRegion derives the ARN partition from a region (spec 11).
func PartitionForRegion(region string) string {
	switch {
	case strings.HasPrefix(region, "cn-"):
		return "aws-cn"
	case strings.HasPrefix(region, "us-gov-"):
		return "aws-us-gov"
	case strings.HasPrefix(region, "us-isob-"):
		return "aws-iso-b"
	case strings.HasPrefix(region, "us-isof-"):
		return "aws-iso-f"
	case strings.HasPrefix(region, "us-iso-"):
		return "aws-iso"
	case strings.HasPrefix(region, "eu-isoe-"):
		return "aws-iso-e"
	case strings.HasPrefix(region, "eusc-"):
		return "aws-eusc"
	}
	return "aws"
}

// functionNameRe is the model's NamespacedFunctionName pattern (spec 11),
// with the optional eusc- region prefix the live service accepts.
var functionNameRe = regexp.MustCompile(`^(?P<arn>arn:(?P<partition>aws[a-zA-Z-]*)?:lambda:)?(?P<region>(?:eusc-)?[a-z]{2}(?:(?:-gov)|(?:-iso(?:[a-z]?)))?-[a-z]+-\d{1}:)?(?P<account>\d{12}:)?(?:function:)?(?P<name>[a-zA-Z0-9-_\.]+)(?::(?P<qualifier>\$LATEST(?:\.PUBLISHED)?|[a-zA-Z0-9-_]+))?$`)

var (
	fnARN       = functionNameRe.SubexpIndex("arn")
	fnPartition = functionNameRe.SubexpIndex("partition")
	fnRegion    = functionNameRe.SubexpIndex("region")
	fnAccount   = functionNameRe.SubexpIndex("account")
	fnName      = functionNameRe.SubexpIndex("name")
	fnQualifier = functionNameRe.SubexpIndex("qualifier")
)

// FunctionRef is a parsed FunctionName.
type FunctionRef struct {
	Partition, Region, Account, Name, Qualifier string
}

// ARN renders the function ARN, qualified only when a qualifier was given.
func (f FunctionRef) ARN() string {
	s := "arn:" + f.Partition + ":lambda:" + f.Region + ":" + f.Account + ":function:" + f.Name
	if f.Qualifier != "" {
		s += ":" + f.Qualifier
	}
	return s
}

// ParseFunctionName resolves any accepted FunctionName form (name,
// name:qualifier, partial ARN, full ARN, qualified ARN) against the default
// region and account. ok is false when the name does not match the pattern.
//
// One recorded AWS quirk: a full ARN ending in :$LATEST is stored unqualified,
// while a partial ARN (account:function:name:$LATEST) keeps :$LATEST
// (test_function_name_variations).
func ParseFunctionName(name, region, account string) (FunctionRef, bool) {
	m := functionNameRe.FindStringSubmatch(name)
	if m == nil {
		return FunctionRef{}, false
	}
	ref := FunctionRef{Region: region, Account: account, Name: m[fnName], Qualifier: m[fnQualifier]}
	if m[fnRegion] != "" {
		ref.Region = strings.TrimSuffix(m[fnRegion], ":")
	}
	if m[fnAccount] != "" {
		ref.Account = strings.TrimSuffix(m[fnAccount], ":")
	}
	ref.Partition = PartitionForRegion(ref.Region)
	if m[fnPartition] != "" {
		ref.Partition = m[fnPartition]
	}
	if m[fnARN] != "" && ref.Qualifier == "$LATEST" {
		ref.Qualifier = ""
	}
	return ref, true
}
