package templates

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// name is the physical name of a resource: its name property, else its
// logical id (CloudFormation would add the stack name and a random suffix;
// locally the logical id is the name a user can create the resource with).
func (e *evaluator) name(r *resource, prop string, at *yaml.Node) (string, error) {
	if r.fixed != "" {
		return r.fixed, nil
	}
	if r.busy {
		return "", e.errf(at, "the name of resource %s depends on itself", r.id)
	}
	if n := field(r.props, prop); n != nil && prop != "" {
		r.busy = true
		restore := e.at(r.id, prop)
		v, err := e.eval(n)
		restore()
		r.busy = false
		if err != nil {
			return "", err
		}
		if v != noValue {
			s, ok := text(v)
			if !ok {
				return "", e.errf(n, "%s of resource %s must be a string, not %s", prop, r.id, describe(v))
			}
			return s, nil
		}
	}
	return r.id, nil
}

// named is what the values of a resource are formed from.
type named struct {
	name, id                   string
	partition, region, account string
}

func (n named) arn(service, rest string) string {
	return fmt.Sprintf("arn:%s:%s:%s:%s:%s", n.partition, service, n.region, n.account, rest)
}

// resourceKind says how a resource type is named and what its Ref ("")
// and GetAtt attributes are.
type resourceKind struct {
	nameProp string // the property that names it; else its logical id
	lower    bool   // a name from the logical id is lower-cased (S3, DocumentDB)
	values   map[string]func(named) string
}

var resourceKinds = func() map[string]*resourceKind {
	name := func(n named) string { return n.name }
	id := func(n named) string { return n.id }
	queue := &resourceKind{nameProp: "QueueName", values: map[string]func(named) string{
		"": func(n named) string {
			return fmt.Sprintf("https://sqs.%s.%s/%s/%s", n.region, urlSuffix(n.partition), n.account, n.name)
		},
		"Arn":       func(n named) string { return n.arn("sqs", n.name) },
		"QueueName": name,
	}}
	queue.values["QueueUrl"] = queue.values[""]
	table := &resourceKind{nameProp: "TableName", values: map[string]func(named) string{
		"": name, "Arn": func(n named) string { return n.arn("dynamodb", "table/"+n.name) }}}
	function := &resourceKind{nameProp: "FunctionName", values: map[string]func(named) string{
		"": name, "Arn": func(n named) string { return n.arn("lambda", "function:"+n.name) }}}
	topicArn := func(n named) string { return n.arn("sns", n.name) }
	cluster := &resourceKind{nameProp: "ClusterName", values: map[string]func(named) string{
		"": func(n named) string { return n.arn("kafka", "cluster/"+n.name+"/"+n.id) }}}
	cluster.values["Arn"] = cluster.values[""]
	secret := func(n named) string { return n.arn("secretsmanager", "secret:"+n.name) }
	return map[string]*resourceKind{
		"AWS::SQS::Queue": queue,
		"AWS::Kinesis::Stream": {nameProp: "Name", values: map[string]func(named) string{
			"": name, "Arn": func(n named) string { return n.arn("kinesis", "stream/"+n.name) }}},
		"AWS::DynamoDB::Table":         table,
		"AWS::DynamoDB::GlobalTable":   table,
		"AWS::Serverless::SimpleTable": table,
		"AWS::SNS::Topic": {nameProp: "TopicName", values: map[string]func(named) string{
			"": topicArn, "TopicArn": topicArn, "TopicName": name}},
		"AWS::S3::Bucket": {nameProp: "BucketName", lower: true, values: map[string]func(named) string{
			"": name, "Arn": func(n named) string { return fmt.Sprintf("arn:%s:s3:::%s", n.partition, n.name) }}},
		"AWS::Lambda::Function":       function,
		"AWS::Serverless::Function":   function,
		"AWS::MSK::Cluster":           cluster,
		"AWS::MSK::ServerlessCluster": cluster,
		"AWS::AmazonMQ::Broker": {nameProp: "BrokerName", values: map[string]func(named) string{
			"": id, "Id": id, "Arn": func(n named) string { return n.arn("mq", "broker:"+n.name+":"+n.id) }}},
		"AWS::DocDB::DBCluster":       {nameProp: "DBClusterIdentifier", lower: true, values: map[string]func(named) string{"": name}},
		"AWS::SecretsManager::Secret": {nameProp: "Name", values: map[string]func(named) string{"": secret, "Id": secret}},
		"AWS::KMS::Key": {values: map[string]func(named) string{
			"": id, "KeyId": id, "Arn": func(n named) string { return n.arn("kms", "key/"+n.id) }}},
	}
}()

// resourceValue is Ref (attr "") or GetAtt of a resource of the template.
func (e *evaluator) resourceValue(r *resource, attr string, at *yaml.Node) (any, error) {
	what, key := "!Ref "+r.id, r.id
	if attr != "" {
		what, key = "!GetAtt "+r.id+"."+attr, r.id+"."+attr
	}
	kind := resourceKinds[r.typ]
	if r.fixed != "" {
		kind = resourceKinds["AWS::Lambda::Function"]
	}
	// A table's stream ARN ends in a label only the running table knows.
	stream := attr == "StreamArn" && kind != nil && kind == resourceKinds["AWS::DynamoDB::Table"]
	if stream && e.o.StreamArn == nil {
		return nil, e.errf(at, "%s: a DynamoDB stream's ARN ends in a label only the running table knows (aws dynamodbstreams list-streams); give it with --resource %s=ARN", what, key)
	}
	if kind == nil || (kind.values[attr] == nil && !stream) {
		return nil, e.errf(at, "%s: esmd does not know this value of a %s resource; give it with --resource %s=VALUE", what, r.typ, key)
	}
	n := named{id: r.id, partition: partition(e.o.Region), region: e.o.Region, account: e.o.Account}
	var err error
	if n.name, err = e.name(r, kind.nameProp, at); err != nil {
		return nil, err
	}
	if field(r.props, kind.nameProp) == nil || kind.nameProp == "" {
		if kind.lower {
			n.name = strings.ToLower(n.name)
		}
		if r.typ == "AWS::SQS::Queue" {
			// CloudFormation gives a FIFO queue it names a .fifo name.
			if v, err := e.eval(field(r.props, "FifoQueue")); err == nil && (v == true || v == "true") {
				n.name += ".fifo"
			}
		}
	}
	if stream {
		arn, err := e.o.StreamArn(n.name)
		if err != nil {
			return nil, e.errf(at, "%s: the stream of table %s: %v; give its ARN with --resource %s=ARN", what, n.name, err, key)
		}
		return arn, nil
	}
	return kind.values[attr](n), nil
}

func urlSuffix(partition string) string {
	if partition == "aws-cn" {
		return "amazonaws.com.cn"
	}
	return "amazonaws.com"
}
