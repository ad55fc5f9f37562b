// Package api serves the AWS Lambda event-source-mapping REST API
// (/2015-03-31/event-source-mappings and /2017-03-31/tags for mapping ARNs)
// over an esm.Engine, byte-compatible with the Lambda service so that the
// AWS CLI and SDKs manage esmd unchanged: the same paths, status codes,
// JSON members and REST-JSON error shapes (X-Amzn-ErrorType, a body with
// "Type" and "message" or "Message" as AWS spells it for each exception).
//
// Protect puts the front end's checks before the handler: AWS Signature
// Version 4 with the keys of a credentials file (Verifier, Credentials),
// and the refusals that keep browsers out (Host, Origin, JSON-only bodies).
// NewServer and ConnLimiter bound the HTTP server: timeouts, header size,
// bodies read at once and open connections.
//
// The package knows nothing about pipelines; every rule lives in package esm.
package api
