// Package dispatcher invokes a Lambda function with an encoded event and
// reads the answer as an event source mapping does.
//
//   - LambdaInvoker calls the Invoke API through aws-sdk-go-v2
//     (RequestResponse, function name and qualifier from the mapping's stored
//     FunctionArn, endpoint from the SDK configuration or WithEndpoint), with
//     a bounded number of concurrent invocations per function. In ModeRIE it
//     talks to the AWS Lambda Runtime Interface Emulator: bare function name
//     "function", one invocation at a time per endpoint (a second concurrent
//     invocation crashes RIE), and RIE's error answers (200 with an
//     {"errorMessage","errorType"} body, 200 with "Task timed out", 502) are
//     reported as function errors.
//   - Errors before the function ran come back as *InvokeError, classified as
//     spec lambda-esm-api.md 10.3 says (ClassRetry, ClassRetryConfig,
//     ClassBadBatch, ClassMapping), with the Retry-After of a 429.
//     A function error is not a Go error: it is Result.FunctionError.
//   - ParseBatchResponse, ParseKafkaBatchResponse and ParseWindowResponse read
//     partial batch responses (ReportBatchItemFailures) and tumbling-window
//     state with every success and failure form the AWS recordings pin down.
//
// The retry policy (MaximumRetryAttempts, MaximumRecordAgeInSeconds, bisect)
// is built on top of Invoke and these parsers; it is not in this package's
// LambdaInvoker, which never retries by itself (the SDK retryer is disabled
// so that every throttle and 5xx reaches the caller classified).
package dispatcher
