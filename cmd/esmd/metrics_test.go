package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/esmd/esmd/internal/testenv"
)

// serve answers GET /metrics beside the Lambda API with the mappings'
// event counts (AWS's ESM metrics) in the Prometheus text format.
func TestServeMetrics(t *testing.T) {
	testenv.Skip(t)
	fq := testenv.FauxQS(t)
	t.Setenv("AWS_ENDPOINT_URL_SQS", fq)
	ctx := context.Background()
	sc := sqs.NewFromConfig(testenv.AWSConfig(fq))
	q, err := sc.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("metrics")})
	if err != nil {
		t.Fatal(err)
	}
	fn := httptest.NewServer(newInvokeRecorder(func(body []byte) ([]string, error) {
		var ev struct{ Records []struct{ MessageID string } }
		err := json.Unmarshal(body, &ev)
		var ids []string
		for _, r := range ev.Records {
			ids = append(ids, r.MessageID)
		}
		return ids, err
	}))
	defer fn.Close()

	c := newCommon("test", io.Discard, "127.0.0.1:0")
	c.dataDir = t.TempDir()
	c.functionCheck = "never"
	c.lambdaEndpoint = fn.URL
	addr, stop := serveWith(t, c)
	defer stop()
	out, err := client(addr).CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{
		FunctionName:   aws.String("function"),
		EventSourceArn: aws.String("arn:aws:sqs:us-east-1:000000000000:metrics"),
		FilterCriteria: &types.FilterCriteria{Filters: []types.Filter{{Pattern: aws.String(`{"body":{"k":["x"]}}`)}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{`{"k":"x"}`, `{"k":"y"}`, `{"k":"x"}`} {
		if _, err := sc.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: q.QueueUrl, MessageBody: aws.String(body)}); err != nil {
			t.Fatal(err)
		}
	}
	labels := fmt.Sprintf(`{uuid=%q,function="arn:aws:lambda:us-east-1:000000000000:function:function",source="sqs"}`, *out.UUID)
	want := map[string]string{
		"esmd_polled_events_total":       "3",
		"esmd_filtered_out_events_total": "1",
		"esmd_invoked_events_total":      "2",
		"esmd_deleted_events_total":      "3",
	}
	testenv.Eventually(t, 20*time.Second, func(context.Context) error {
		text := scrapeMetrics(t, addr)
		bad := ""
		for name, v := range want {
			if got := metricValue(text, name+labels); got != v {
				bad += fmt.Sprintf("%s = %q, want %s; ", name, got, v)
			}
		}
		if bad != "" {
			return fmt.Errorf("%s\n%s", bad, text)
		}
		return nil
	})
	// The Lambda API still answers beside it.
	if _, err := client(addr).GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: out.UUID}); err != nil {
		t.Fatal(err)
	}
}

func scrapeMetrics(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %d %v %s", resp.StatusCode, err, b)
	}
	return string(b)
}

// metricValue returns the sample of the line that starts with prefix.
func metricValue(text, prefix string) string {
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix+" ") {
			return strings.TrimPrefix(l, prefix+" ")
		}
	}
	return ""
}
