package templates

import (
	"errors"
	"strings"
	"testing"
)

const samHead = `Transform: AWS::Serverless-2016-10-31
Parameters:
  Size:
    Type: Number
Resources:
  Queue:
    Type: AWS::SQS::Queue
  Table:
    Type: AWS::DynamoDB::Table
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Events:
        E:
          Type: SQS
          Properties:
`

// TestErrors checks that what cannot be resolved is an error naming the
// file, the line, the resource and the property.
func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		opts      Options
		want      string
	}{
		{"missing resource", samHead + "            Queue: !GetAtt Missing.Arn\n",
			Options{}, "t.yaml:17: Fn.Events.E.Properties.Queue: !GetAtt Missing.Arn: the template has no resource Missing"},
		{"parameter without default", samHead + "            Queue: !GetAtt Queue.Arn\n            BatchSize: !Ref Size\n",
			Options{}, "t.yaml:18: Fn.Events.E.Properties.BatchSize: !Ref Size: parameter Size has no Default; give it with --parameter-overrides Size=VALUE"},
		{"stream label", "Transform: AWS::Serverless-2016-10-31\nResources:\n  Table:\n    Type: AWS::DynamoDB::Table\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties:\n      Events:\n        E:\n          Type: DynamoDB\n          Properties:\n            StartingPosition: LATEST\n            Stream: !GetAtt Table.StreamArn\n",
			Options{}, "t.yaml:13: Fn.Events.E.Properties.Stream: !GetAtt Table.StreamArn: a DynamoDB stream's ARN ends in a label only the running table knows"},
		{"import without flag", samHead + "            Queue: !ImportValue shared-queue\n",
			Options{}, "t.yaml:17: Fn.Events.E.Properties.Queue: !ImportValue shared-queue: no value given; pass --import-value shared-queue=VALUE"},
		{"unknown property", samHead + "            Queue: !GetAtt Queue.Arn\n            BatchSise: 5\n",
			Options{}, "t.yaml:18: Fn.Events.E.Properties.BatchSise: BatchSise is not a property of a SAM SQS event"},
		{"no queue", samHead + "            BatchSize: 5\n",
			Options{}, "t.yaml:15: Fn.Events.E.Properties: the SQS event has no Queue"},
		{"unknown condition", samHead + "            Queue: !If [Nope, a, b]\n",
			Options{}, "t.yaml:17: Fn.Events.E.Properties.Queue: the template has no condition Nope"},
		{"unsupported intrinsic", samHead + "            Queue: !GetAZs ''\n",
			Options{}, "t.yaml:17: Fn.Events.E.Properties.Queue: !GetAZs is not supported"},
		{"unknown resource type", "Resources:\n  Broker:\n    Type: Custom::Broker\n  M:\n    Type: AWS::Lambda::EventSourceMapping\n    Properties:\n      FunctionName: f\n      EventSourceArn: !GetAtt Broker.Arn\n",
			Options{}, "t.yaml:8: M.Properties.EventSourceArn: !GetAtt Broker.Arn: esmd does not know this value of a Custom::Broker resource; give it with --resource Broker.Arn=VALUE"},
		{"cfn unknown property", "Resources:\n  M:\n    Type: AWS::Lambda::EventSourceMapping\n    Properties:\n      FunctionName: f\n      Batchsize: 5\n",
			Options{}, "t.yaml:6: M.Properties.Batchsize: Batchsize is not a property of AWS::Lambda::EventSourceMapping"},
		{"select out of range", "Resources:\n  M:\n    Type: AWS::Lambda::EventSourceMapping\n    Properties:\n      FunctionName: !Select [3, [a, b]]\n",
			Options{}, "t.yaml:5: M.Properties.FunctionName: !Select: index 3 is out of range for a list of 2"},
		{"sub unknown", "Resources:\n  M:\n    Type: AWS::Lambda::EventSourceMapping\n    Properties:\n      FunctionName: !Sub '${Who}-fn'\n",
			Options{}, "t.yaml:5: M.Properties.FunctionName: !Ref Who: the template has no parameter or resource Who"},
		{"condition cycle", "Conditions:\n  A: !Condition B\n  B: !Condition A\nResources:\n  M:\n    Type: AWS::Lambda::EventSourceMapping\n    Condition: A\n    Properties:\n      FunctionName: f\n",
			Options{}, "condition A refers to itself"},
		{"name cycle", "Resources:\n  Q:\n    Type: AWS::SQS::Queue\n    Properties:\n      QueueName: !GetAtt Q.QueueName\n  M:\n    Type: AWS::Lambda::EventSourceMapping\n    Properties:\n      FunctionName: f\n      EventSourceArn: !GetAtt Q.Arn\n",
			Options{}, "the name of resource Q depends on itself"},
		{"override of no parameter", "Resources: {}\n",
			Options{Parameters: map[string]string{"Stage": "prod"}}, "--parameter-overrides Stage=prod: the template has no parameter Stage"},
		{"serverless unknown variable", "service: s\nfunctions:\n  f:\n    events:\n      - sqs: ${ssm:/queue/arn}\n",
			Options{}, "t.yaml:5: f.events[0].sqs.arn: ${ssm:/queue/arn}: esmd does not resolve ssm: variables"},
		{"serverless no value", "service: s\nfunctions:\n  f:\n    events:\n      - sqs:\n          arn: ${env:NOPE_NOT_SET}\n",
			Options{LookupEnv: func(string) (string, bool) { return "", false }}, "t.yaml:6: f.events[0].sqs.arn: ${env:NOPE_NOT_SET}: no value, and no fallback that has one"},
		{"serverless unknown property", "service: s\nfunctions:\n  f:\n    events:\n      - stream:\n          arn: arn:aws:kinesis:us-east-1:000000000000:stream/s\n          batchsize: 5\n",
			Options{}, "t.yaml:7: f.events[0].stream: batchsize is not a property of a stream event"},
		{"serverless consumer true", "service: s\nfunctions:\n  f:\n    events:\n      - stream:\n          arn: arn:aws:kinesis:us-east-1:000000000000:stream/s\n          consumer: true\n",
			Options{}, "t.yaml:7: f.events[0].stream.consumer: consumer: true has the framework register a stream consumer"},
		{"serverless missing topic", "service: s\nfunctions:\n  f:\n    events:\n      - msk:\n          arn: arn:aws:kafka:us-east-1:000000000000:cluster/c/u\n",
			Options{}, "t.yaml:5: f.events[0].msk: a msk event needs topic"},
		{"serverless variable cycle", "service: s\ncustom:\n  a: ${self:custom.b}\n  b: ${self:custom.a}\nfunctions:\n  f:\n    events:\n      - sqs: ${self:custom.a}\n",
			Options{}, "more than 32 deep"},
		{"function name of a mapping", "Transform: AWS::Serverless-2016-10-31\nResources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties:\n      FunctionName: !ImportValue fn-name\n      Events:\n        Q:\n          Type: SQS\n          Properties:\n            Queue: arn:aws:sqs:us-east-1:000000000000:q\n",
			Options{}, "t.yaml:6: Fn.FunctionName: !ImportValue fn-name: no value given; pass --import-value fn-name=VALUE"},
		{"yaml syntax", "Resources:\n  M: [\n", Options{}, "t.yaml: yaml: line 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(tc.src), tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v\nwant one containing %q", err, tc.want)
			}
		})
	}
}

// TestNameNotNeeded: a function with no event source mapping is not
// named, so what its name needs is not asked for.
func TestNameNotNeeded(t *testing.T) {
	src := "Transform: AWS::Serverless-2016-10-31\nResources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties:\n      FunctionName: !ImportValue fn-name\n      Events:\n        Get:\n          Type: Api\n"
	tmpl, err := Parse("t.yaml", []byte(src), Options{})
	if err != nil || len(tmpl.Mappings) != 0 || len(tmpl.Ignored) != 1 {
		t.Fatalf("%+v, %v", tmpl, err)
	}
}

func TestNotTemplate(t *testing.T) {
	for _, src := range []string{
		`{"FunctionName": "f", "EventSourceArn": "arn:aws:sqs:us-east-1:000000000000:q"}`,
		`[{"FunctionName": "f"}]`,
		"EventSourceMappings:\n  - FunctionName: f\n",
		"",
	} {
		if _, err := Parse("m.yaml", []byte(src), Options{}); !errors.Is(err, ErrNotTemplate) {
			t.Errorf("%q: %v, want ErrNotTemplate", src, err)
		}
	}
}

func TestParameterOverrides(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want map[string]string
		err  string
	}{
		{`Stage=prod Size=10`, map[string]string{"Stage": "prod", "Size": "10"}, ""},
		{`ParameterKey=Stage,ParameterValue=prod ParameterKey=Name,ParameterValue="a b"`, map[string]string{"Stage": "prod", "Name": "a b"}, ""},
		{`Msg="say \"hi\"" Url=http://x/?a=b`, map[string]string{"Msg": `say "hi"`, "Url": "http://x/?a=b"}, ""},
		{`AWS::StackName=orders`, map[string]string{"AWS::StackName": "orders"}, ""},
		{`Stage`, nil, `"Stage": write KEY=VALUE`},
		{`Name="open`, nil, "a quoted value is not closed"},
		{`ParameterKey=Stage`, nil, "write ParameterKey=KEY,ParameterValue=VALUE"},
	} {
		got := map[string]string{}
		err := ParseParameterOverrides(tc.in, got)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("%s: %s=%q, want %q", tc.in, k, got[k], v)
			}
		}
		if len(got) != len(tc.want) {
			t.Errorf("%s: got %v", tc.in, got)
		}
	}
}
