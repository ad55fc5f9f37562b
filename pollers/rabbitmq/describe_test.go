package rabbitmq

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/mq"

	"github.com/esmd/esmd/internal/testenv"
)

// TestDescribeBrokerChecksTheARN: DescribeBroker finds a broker by the
// ARN's last field alone; an ARN whose id is the broker's but whose name,
// region or account is not (written to match a secret's
// esmd:allowed-endpoints glob) is refused.
func TestDescribeBrokerChecksTheARN(t *testing.T) {
	const real = "arn:aws:mq:us-east-1:000000000000:broker:staging:b-1"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"brokerId":"b-1","brokerArn":"`+real+`","engineType":"RABBITMQ","brokerInstances":[{"endpoints":["amqps://b-1.mq.us-east-1.amazonaws.com:5671"]}]}`)
	}))
	defer srv.Close()
	client := mq.NewFromConfig(testenv.AWSConfig(srv.URL))
	ctx := context.Background()
	if ep, err := describeBroker(ctx, client, real); err != nil || ep != "amqps://b-1.mq.us-east-1.amazonaws.com:5671" {
		t.Errorf("the broker's own ARN: %q, %v", ep, err)
	}
	for _, arn := range []string{
		"arn:aws:mq:us-east-1:000000000000:broker:prod:b-1",
		"arn:aws:mq:eu-west-1:000000000000:broker:staging:b-1",
		"arn:aws:mq:us-east-1:111111111111:broker:staging:b-1",
	} {
		if ep, err := describeBroker(ctx, client, arn); err == nil || !strings.Contains(err.Error(), "the broker b-1 is "+real+", not "+arn) {
			t.Errorf("%s: %q, %v", arn, ep, err)
		}
	}
}
