// Package pollers is the home of one package per event source (pollers/sqs,
// pollers/kinesis, pollers/kafka, pollers/rabbitmq, pollers/docdb). Each reads
// its source and acknowledges batch outcomes in the source's own terms.
package pollers
