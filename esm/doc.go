// Package esm is the event source mapping model of esmd: the
// CreateEventSourceMapping / UpdateEventSourceMapping request shape, source
// detection from the event source ARN, per-source defaults, validation with
// AWS's exact error types, HTTP statuses and messages, FunctionName
// normalisation, the mapping state machine, and the Engine that keeps the
// mappings, persists them and starts, updates and stops one pipeline per
// enabled mapping.
//
// The package knows nothing about HTTP (see package api) nor about how any
// source is read (see the pollers packages, which plug in through the
// Runner interface declared here).
//
// Where AWS's behaviour is recorded (testdata/conformance/aws-recordings)
// the messages here are byte-for-byte those recordings; where it is not, the
// choice is documented next to the rule.
package esm
