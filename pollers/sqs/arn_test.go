package sqs

import "testing"

func TestParseARN(t *testing.T) {
	q, err := ParseARN("arn:aws:sqs:eu-west-1:123456789012:orders.fifo")
	if err != nil || q.Region != "eu-west-1" || q.Account != "123456789012" || q.Name != "orders.fifo" || !q.FIFO() {
		t.Fatalf("%+v, %v", q, err)
	}
	for _, bad := range []string{
		"", "arn:aws:sqs:eu-west-1:123456789012", "arn:aws:sns:eu-west-1:123456789012:t",
		"arn:aws:sqs::123456789012:q", "arn:aws:sqs:eu-west-1::q", "arn:aws:sqs:eu-west-1:123456789012:",
		"arn:aws:sqs:eu-west-1:123456789012:q:extra", "urn:aws:sqs:eu-west-1:123456789012:q",
	} {
		if _, err := ParseARN(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
