// Package bench is the engine of `esmd bench`: it measures one event
// source mapping end to end, from the moment a record is produced to the
// moment a function is invoked with it, the way a user runs esmd.
//
// A run has four parts, each in its own file:
//
//   - a Target (target.go; kafka.go, sqs.go, ... one per source) that
//     prepares the source, produces numbered records into it, describes
//     the mapping esmd runs, and runs the plain client loop that
//     --compare raw measures esmd against;
//   - the system under test, a child process (child.go): `esmd run -f`
//     with the mapping, or the raw loop; the child's CPU time and peak RSS
//     come from wait4, so the bench's own work (broker, producer,
//     endpoint) is not counted;
//   - the Endpoint (endpoint.go), a no-op Lambda Invoke API on 127.0.0.1
//     that finds each record's id and produce time in the event, and the
//     Collector (collect.go) that counts deliveries, duplicates and
//     latencies into Histograms (histogram.go);
//   - the Result (result.go), printed as a summary, written as JSON
//     (--json) and as a self-contained HTML report (report.go, --report).
//
// Records carry a token BENCH:<id>:<produce unix nanos>:<m|s> at the start
// of their JSON body, so the endpoint needs no per-record JSON decoding:
// it finds the token directly (sources whose events carry the body as
// text) or decodes the first bytes of each base64 data field.
//
// The package knows sources, as a tool does (like `esmd demo`); esmd's
// core (pipeline, batcher, dispatcher) knows nothing of it.
package bench
