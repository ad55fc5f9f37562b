// Package filter implements Lambda event filtering (FilterCriteria): the
// EventBridge event-pattern language, validated with AWS's messages,
// compiled once per mapping and matched against each record the way Lambda
// matches it for that record's source.
//
// # Use
//
// The esm package calls Compile with a mapping's Filters[].Pattern strings
// at create/update time; a *PatternError answers the API call with
// InvalidParameterValueException and InvalidPatternMessage ("Invalid filter
// pattern definition."), while PatternError.Detail gives the EventBridge
// reason ("Event pattern is not valid. Reason: ...") for tools. Limits:
// MaxPatternLength characters per pattern, DefaultMaxFilters filters per
// mapping (WithMaxFilters raises it up to QuotaMaxFilters).
//
// Pollers call Matcher.Match with the record JSON exactly as it will
// appear in the Lambda event. Filtered-out records are then acked at once
// (SQS delete, stream checkpoint, Kafka commit, MQ ack).
//
// # Language
//
// A pattern is a JSON object whose leaves are arrays of alternatives:
// exact strings, numbers, true, false and null; {"prefix": s},
// {"suffix": s}, {"equals-ignore-case": s} and prefix/suffix with
// {"equals-ignore-case": s}; {"anything-but": v} with a string, a number or
// a list of either; {"numeric": [op, n, ...]} with =, <, <=, >, >= and
// ranges; {"exists": true|false}; {"wildcard": s}; {"cidr": s} (IPv4 and
// IPv6); "$or" over sub-objects. Named fields are ANDed, alternatives and
// filters ORed. Nested objects flatten to dotted paths, so {"a":{"b":..}}
// and {"a.b":..} name the same field in patterns and in events. An array in
// an event matches when any element matches, and fields matched for one
// pattern must come from the same element of an array of objects, as in
// the reference engine (aws/event-ruler). exists works on leaves only. A
// field repeated in a pattern keeps its last occurrence. As in the
// reference engine, a pattern whose "$or" cannot be read as the operator
// is read again with "$or" as an ordinary field name, and that reading's
// error, if any, is reported. Nested "$or" may expand to at most 1024
// alternatives per pattern.
//
// The Lambda dialect (the default) rejects "wildcard" and the anything-but
// object forms ({"anything-but": {"prefix"|"suffix"|"equals-ignore-case"|
// "wildcard": ...}}), which EventBridge's operator table marks as not
// supported by Pipes, whose filtering Lambda shares; "cidr" is accepted
// (the table does not list it). WithDialect(EventBridge) accepts the whole
// grammar.
//
// # Numbers
//
// Numbers compare as decimals, never through float64: 300, 300.0 and
// 3.0e2 are equal. Like the reference engine, both sides are rounded to six
// decimal places (halves toward +Inf) and must lie in [-5e9, 5e9]: equality
// and order are exact for values with at most six decimals, and values that
// differ only beyond the sixth decimal compare equal. A "numeric" or
// "anything-but" operand outside the range is rejected ("Value must be
// between -5.0E9 and 5.0E9, inclusive"); as a plain value it only matches
// the same literal text. An event value outside the range never satisfies
// "numeric" and is unequal to every anything-but number. Numbers never
// equal strings: "300" does not match 300.
//
// # What is matched, per source
//
//   - SourceSQS: the SQS record; "body" is matched as JSON when it is a
//     JSON object or array, otherwise as a string. A plain body with a JSON
//     pattern on body, or a JSON body with a plain pattern on body, does
//     not match (the message is dropped).
//   - SourceKinesis: the record with base64 "kinesis.data" decoded; the
//     "kinesis" fields are also visible at the top level, so patterns may
//     name "data" and "partitionKey" as Lambda's documentation does (a
//     record already flattened that way, with a top-level base64 "data",
//     works too). When data is not JSON, patterns on data.* do not match
//     (dropped).
//   - SourceDynamoDB: the record as is; attribute values stay typed, so a
//     pattern names "S"/"N"/... and "numeric" never applies to "N" strings.
//   - SourceKafka ("value") and SourceMQ (RabbitMQ and ActiveMQ, "data"):
//     base64 decoded, JSON or a plain string. When the payload's shape does
//     not fit the pattern (plain payload with a JSON pattern, JSON payload
//     with a plain pattern, payload not UTF-8), the pattern's clauses on the
//     payload are ignored and only its metadata clauses decide.
//   - SourceDocumentDB and SourceNone: the record as is (Lambda does not
//     filter DocumentDB streams; WithSource rejects filters for it).
//
// Metadata fields (eventSource, attributes, partition, ...) are
// filterable for every source.
//
// # Performance
//
// Compile builds a trie of the field paths the patterns mention and, per
// field, hash sets and small lists of the distinct alternatives, each
// tagged with the clause bits it satisfies. Match is a single pass over the
// record bytes with a hand-written scanner: subtrees no pattern mentions
// are skipped by bracket matching, scalars are compared in place, clause
// bits are collected in pooled bitsets and the answer is ready when the
// first filter is satisfied. It allocates nothing in the steady state and
// is safe for concurrent use.
package filter
