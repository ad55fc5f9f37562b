// Package api serves the AWS Lambda event-source-mapping REST API
// (/2015-03-31/event-source-mappings and /2017-03-31/tags for mapping ARNs)
// over an esm.Engine, byte-compatible with the Lambda service so that the
// AWS CLI and SDKs manage esmd unchanged: the same paths, status codes,
// JSON members and REST-JSON error shapes (X-Amzn-ErrorType, a body with
// "Type" and "message" or "Message" as AWS spells it for each exception).
//
// The package knows nothing about pipelines; every rule lives in package esm.
package api
