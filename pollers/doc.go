// Package pollers is the home of one package per event source (pollers/sqs,
// pollers/kinesis, pollers/dynamodbstreams, pollers/kafka, pollers/rabbitmq, pollers/activemq,
// pollers/documentdb).
// Each reads its source, acknowledges outcomes in the source's own terms
// (source.Poller), and describes itself to the core with a
// source.Descriptor; docs/architecture.md lists what a new source needs.
package pollers
