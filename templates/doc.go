// Package templates reads the event source mappings an infrastructure
// template declares, so that esmd runs the mappings a user already
// describes for deployment:
//
//   - SAM: the Events of AWS::Serverless::Function of type SQS, Kinesis,
//     DynamoDB, MSK, SelfManagedKafka, MQ and DocumentDB;
//   - CloudFormation: AWS::Lambda::EventSourceMapping resources;
//   - Serverless Framework: the sqs, stream, msk, kafka, activemq and
//     rabbitmq events of a serverless.yml's functions.
//
// Each mapping becomes the CreateEventSourceMapping request a deployment
// would make, so esmd validates and runs it exactly as one made through the
// API. The templates are YAML with CloudFormation's short-form tags (!Ref,
// !GetAtt, !Sub, ...) or JSON, read with go.yaml.in/yaml/v3 nodes so that
// every error names a line. Intrinsic functions are evaluated where the
// mappings use them: resources of the template get local names and ARNs
// (a queue, stream or table is named by its QueueName, Name or TableName,
// else by its logical id, in esmd's region and account), parameters take
// their --parameter-overrides value or Default, conditions are evaluated on
// those, and Fn::ImportValue is answered from a flag. Nothing that cannot
// be resolved is skipped: it is an *Error naming the resource, the property
// and the line.
//
// goformation was considered and not used: it resolves intrinsics on a
// JSON copy of the template, losing the lines errors must name.
package templates
