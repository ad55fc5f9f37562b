// Command function is a minimal Lambda function (aws-lambda-go) that logs
// and echoes the event it receives; docker-compose.yml runs it under the
// Lambda Runtime Interface Emulator beside esmd.
package main

import (
	"context"
	"encoding/json"
	"log"

	"github.com/aws/aws-lambda-go/lambda"
)

func handle(_ context.Context, event json.RawMessage) (json.RawMessage, error) {
	log.Printf("event: %s", event)
	return event, nil
}

func main() { lambda.Start(handle) }
