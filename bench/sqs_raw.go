package bench

import (
	"context"
	"strconv"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/esmd/esmd/internal/awsconfig"
	"github.com/esmd/esmd/payload"
)

// sqsRawPollers is how many receive loops the raw SQS loop runs: Lambda
// starts an SQS mapping with five pollers.
const sqsRawPollers = 5

// rawSQS is the plain SDK loop: five goroutines each receive up to
// BatchSize messages (10 per ReceiveMessage, long polling; with a window,
// more receives until BatchSize or the window), invoke them as one SQS
// event, and delete them with DeleteMessageBatch.
func rawSQS(ctx context.Context, s *RawSpec, inv *rawInvoker) error {
	cfg, err := awsconfig.Load(ctx, s.Region, false)
	if err != nil {
		return err
	}
	cl := sqs.NewFromConfig(cfg)
	env := payload.Records(s.Arn)
	var wg sync.WaitGroup
	errc := make(chan error, sqsRawPollers)
	for range sqsRawPollers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errc <- sqsPoller(ctx, s, inv, cl, env)
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil && ctx.Err() == nil {
			return err
		}
	}
	return ctx.Err()
}

func sqsPoller(ctx context.Context, s *RawSpec, inv *rawInvoker, cl *sqs.Client, env payload.Envelope) error {
	var ev []byte
	for ctx.Err() == nil {
		var msgs []sqstypes.Message
		deadline := timeAfter(s.Window)
		for len(msgs) < s.BatchSize {
			wait := int32(20)
			if len(msgs) > 0 {
				if s.Window == 0 || deadline.passed() {
					break
				}
				wait = int32(max(deadline.left().Seconds(), 0))
			}
			out, err := cl.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &s.Name,
				MaxNumberOfMessages: int32(min(10, s.BatchSize-len(msgs))), WaitTimeSeconds: wait,
				MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll}})
			if err != nil {
				return err
			}
			msgs = append(msgs, out.Messages...)
			if len(out.Messages) == 0 && len(msgs) > 0 {
				break
			}
		}
		ev = append(ev[:0], env.Head...)
		n := 0
		for i := range msgs {
			m := &msgs[i]
			if !keep(s, []byte(aws.ToString(m.Body))) {
				continue
			}
			if n > 0 {
				ev = append(ev, ',')
			}
			n++
			ev = payload.AppendSQS(ev, &payload.SQSMessage{MessageID: aws.ToString(m.MessageId), ReceiptHandle: aws.ToString(m.ReceiptHandle),
				Body: aws.ToString(m.Body), MD5OfBody: aws.ToString(m.MD5OfBody), EventSourceARN: s.Arn, AWSRegion: s.Region,
				Attributes: payload.SQSAttributes{ApproximateReceiveCount: m.Attributes["ApproximateReceiveCount"],
					SentTimestamp: m.Attributes["SentTimestamp"], SenderID: m.Attributes["SenderId"],
					ApproximateFirstReceiveTimestamp: m.Attributes["ApproximateFirstReceiveTimestamp"]}})
		}
		ev = append(ev, env.Tail...)
		if n > 0 {
			if err := inv.Invoke(ctx, ev); err != nil {
				return err
			}
		}
		for i := 0; i < len(msgs); i += 10 {
			in := &sqs.DeleteMessageBatchInput{QueueUrl: &s.Name}
			for j := i; j < min(i+10, len(msgs)); j++ {
				in.Entries = append(in.Entries, sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(j)), ReceiptHandle: msgs[j].ReceiptHandle})
			}
			if _, err := cl.DeleteMessageBatch(ctx, in); err != nil {
				return err
			}
		}
	}
	return ctx.Err()
}
