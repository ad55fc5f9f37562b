// Command esmd runs AWS Lambda event source mappings: it serves the Lambda
// event-source-mapping REST API and runs one pipeline per enabled mapping.
//
//	esmd serve [flags]        API and engine, mappings kept in an embedded store
//	esmd run -f FILE [flags]  standalone worker for the mappings a file declares
//	esmd filter ...           check a FilterCriteria pattern against an event
//	esmd demo                 a live demo: an in-process Kafka, a mapping and a function
//	esmd bench [flags]        measure a mapping end to end (docs/performance.md)
//	esmd store check|backup   verify a store, or copy it (also while esmd serve runs)
//	esmd version | --version
//	esmd help [command]
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// version is set with -ldflags "-X main.version=..." by release builds.
var version = ""

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	stopProfile := startProfile(os.Stderr)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stopProfile()
	stop()
	os.Exit(code)
}

// errUsage marks a command-line mistake: exit status 2.
var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serveCmd(ctx, args[1:], stdout, stderr)
	case "run":
		err = runCmd(ctx, args[1:], stdout, stderr)
	case "replay":
		err = replayCmd(ctx, args[1:], stdout, stderr)
	case "filter":
		return filterCmd(ctx, args[1:], stdin, stdout, stderr)
	case "demo":
		err = demoCmd(ctx, args[1:], stdout, stderr)
	case "bench":
		err = benchCmd(ctx, args[1:], stdin, stdout, stderr)
	case "store":
		err = storeCmd(ctx, args[1:], stdout, stderr)
	case "version", "--version", "-version", "-v":
		fmt.Fprintln(stdout, "esmd", versionString())
		return 0
	case "help", "--help", "-help", "-h":
		return helpCmd(args[1:], stdout, stderr)
	default:
		fmt.Fprintf(stderr, "esmd: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		fmt.Fprintln(stderr, "esmd:", err)
		return 1
	}
}

func helpCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stdout, usage)
		return 0
	}
	switch args[0] {
	case "serve":
		serveFlags(io.Discard).usage(stdout)
	case "run":
		runFlags(io.Discard).usage(stdout)
	case "filter":
		return filterCmd(context.Background(), []string{"-h"}, nil, stdout, stdout)
	case "demo":
		demoCmd(context.Background(), []string{"-h"}, stdout, stdout)
	case "bench":
		_ = benchCmd(context.Background(), []string{"-h"}, nil, stdout, stdout)
	case "store":
		fmt.Fprint(stdout, storeCmdUsage)
	case "replay":
		fmt.Fprint(stdout, replayCmdUsage)
	default:
		fmt.Fprintf(stderr, "esmd: no help for %q\n", args[0])
		return 2
	}
	return 0
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

const usage = `esmd runs AWS Lambda event source mappings outside AWS: it polls a source,
filters and batches records, and invokes a function through the Lambda Invoke API,
with Lambda's retry, ordering and failure routing. It serves the Lambda
event-source-mapping API, so the AWS CLI and SDKs manage it unchanged.

Usage:
  esmd demo [--duration 30s]
        A live demo with nothing installed: an in-process Kafka broker with a
        producer of sample orders, a mapping with a filter, and a local
        function that prints every batch it receives.
  esmd bench [--records N] [--source S] [--compare raw] [--report DIR]
        Measure a mapping end to end: records produced into a source, the
        function invoked; throughput, latency, CPU and memory. With no flags:
        an in-process Kafka broker and a built-in no-op function.
  esmd serve [--addr 127.0.0.1:9000] [--data-dir DIR] [flags]
        Serve the API and run every enabled mapping. Mappings are kept in an
        embedded store in --data-dir and survive restarts.
  esmd run -f mappings.yaml [flags]
        Standalone worker: run the mappings the file declares (the shape
        'aws lambda create-event-source-mapping --cli-input-json' takes; a
        single object, a list, or {"EventSourceMappings": [...]}, in JSON or
        YAML), or a SAM, CloudFormation or Serverless Framework template
        (--parameter-overrides, --import-value, --resource, --stage).
        Add --addr to also serve the API.
  esmd replay [--endpoint URL] UUID TRIM_HORIZON|LATEST|TIME
        Rewind one mapping of a running serve (Kinesis, DynamoDB Streams,
        Kafka, DocumentDB) to a position or a time: esmd's own call.
  esmd filter --pattern P --event E [--source sqs|kinesis|kafka|mq|dynamodb]
        Check whether a FilterCriteria pattern keeps an event.
  esmd store check [--data-dir DIR | --store FILE]
        Verify a store: exit status 0 when sound, 1 with what was found.
  esmd store backup [--endpoint URL | --data-dir DIR] FILE
        Write a consistent copy of a store, also while 'esmd serve' runs
        (--endpoint: through it). See 'esmd help store'.
  esmd version
  esmd help [serve|run|replay|filter|demo|bench|store]

AWS endpoints, region and credentials come from the AWS SDK's standard
configuration: AWS_REGION, AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_LAMBDA,
AWS_ENDPOINT_URL_SQS, ..., AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, profiles.

Example:
  esmd serve &
  aws --endpoint-url http://127.0.0.1:9000 lambda create-event-source-mapping \
      --function-name my-function --batch-size 5 \
      --event-source-arn arn:aws:sqs:us-east-1:000000000000:my-queue
  aws --endpoint-url http://127.0.0.1:9000 lambda list-event-source-mappings
`
