package esm

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

const (
	tagKeysConstraint = `Map keys must satisfy constraint: [Member must have length less than or equal to 128, ` +
		`Member must have length greater than or equal to 1, Member must satisfy regular expression pattern: ^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$]`
	tagValuesConstraint = `Map value must satisfy constraint: [Member must have length less than or equal to 256, ` +
		`Member must have length greater than or equal to 0, Member must satisfy regular expression pattern: ^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$]`
	tooManyTags = "Number of tags exceeds resource tag limit."
)

func nTags(n int) map[string]string {
	m := make(map[string]string, n)
	for i := range n {
		m[fmt.Sprintf("k%02d", i)] = "v"
	}
	return m
}

// tagCases are the Tags maps AWS refuses, on Create and on TagResource
// alike.
func tagCases() []struct {
	name    string
	tags    map[string]string
	typ     string
	message string
} {
	k129, v257 := strings.Repeat("k", 129), strings.Repeat("v", 257)
	return []struct {
		name    string
		tags    map[string]string
		typ     string
		message string
	}{
		{"51 tags", nTags(51), ipv, tooManyTags},
		{"10000 tags", nTags(10000), ipv, tooManyTags},
		{"key of 129", map[string]string{k129: "v"}, ErrTypeValidation, vmsg("'{"+k129+"=v}'", "tags", tagKeysConstraint)},
		{"empty key", map[string]string{"": "v"}, ErrTypeValidation, vmsg("'{=v}'", "tags", tagKeysConstraint)},
		{"bad#key", map[string]string{"bad#key": "v", "a": "b"}, ErrTypeValidation, vmsg("'{a=b, bad#key=v}'", "tags", tagKeysConstraint)},
		{"value of 257", map[string]string{"k": v257}, ErrTypeValidation, vmsg("'{k="+v257+"}'", "tags", tagValuesConstraint)},
		{"value with a comma", map[string]string{"k": "a,b"}, ErrTypeValidation, vmsg("'{k=a,b}'", "tags", tagValuesConstraint)},
		{"bad key and value", map[string]string{"a*": "b*"}, ErrTypeValidation,
			"2 validation errors detected: Value '{a*=b*}' at 'tags' failed to satisfy constraint: " + tagKeysConstraint +
				"; Value '{a*=b*}' at 'tags' failed to satisfy constraint: " + tagValuesConstraint},
		{"aws: key", map[string]string{"aws:cloudformation:stack-name": "s"}, ipv, "Invalid tag key aws:cloudformation:stack-name: the aws: prefix is reserved for AWS use."},
		{"AWS: key", map[string]string{"AWS:x": "s"}, ipv, "Invalid tag key AWS:x: the aws: prefix is reserved for AWS use."},
	}
}

// acceptedTags are maps at the limits.
var acceptedTags = map[string]map[string]string{
	"50 tags":              nTags(50),
	"key of 128":           {strings.Repeat("k", 128): "v"},
	"value of 256":         {"k": strings.Repeat("v", 256)},
	"empty value":          {"k": ""},
	"every allowed symbol": {"a b_.:/=+-@": "a b_.:/=+-@"},
	"letters and digits":   {"Équipe": "東京 ٣"},
	"aws inside the key":   {"team:aws:x": "aws:y"},
}

func TestCreateTags(t *testing.T) {
	var cases []errCase
	for _, tc := range tagCases() {
		cases = append(cases, errCase{tc.name, Config{EventSourceArn: sp(sqsArn), Tags: tc.tags}, tc.typ, 400, tc.message})
	}
	runErrCases(t, cases)
	for name, tags := range acceptedTags {
		t.Run(name+" accepted", func(t *testing.T) {
			e := newTestEngine(t)
			m, err := e.Create(context.Background(), &Config{FunctionName: sp("f"), EventSourceArn: sp(sqsArn), Tags: tags})
			if err != nil {
				t.Fatal(err)
			}
			got, err := e.ListTags(context.Background(), m.Arn)
			if err != nil || len(got) != len(tags) {
				t.Errorf("ListTags: %d tags, %v", len(got), err)
			}
		})
	}
}

func TestTagResourceRules(t *testing.T) {
	ctx := context.Background()
	e := newTestEngine(t)
	m, err := e.Create(ctx, &Config{FunctionName: sp("f"), EventSourceArn: sp(sqsArn), Tags: nTags(49)})
	if err != nil {
		t.Fatal(err)
	}
	missing := "arn:aws:lambda:us-east-1:111111111111:event-source-mapping:00000000-0000-0000-0000-000000000000"
	long := m.Arn + strings.Repeat("0", 257-len(m.Arn))
	check := func(t *testing.T, err error, typ string, status int, message string) {
		t.Helper()
		if ae := asAPIError(t, err); ae.Type != typ || ae.Status != status || ae.Message != message {
			t.Errorf("got %s %d %q\nwant %s %d %q", ae.Type, ae.Status, ae.Message, typ, status, message)
		}
	}
	for _, tc := range tagCases() {
		t.Run(tc.name, func(t *testing.T) {
			check(t, e.TagResource(ctx, m.Arn, tc.tags), tc.typ, 400, tc.message)
		})
	}
	t.Run("null tags", func(t *testing.T) {
		check(t, e.TagResource(ctx, m.Arn, nil), ErrTypeValidation, 400, vmsg("null", "tags", "Member must not be null"))
	})
	t.Run("empty tags", func(t *testing.T) {
		check(t, e.TagResource(ctx, m.Arn, map[string]string{}), ipv, 400, "An error occurred and the request cannot be processed.")
	})
	t.Run("resource of 257", func(t *testing.T) {
		check(t, e.TagResource(ctx, long, map[string]string{"a": "b"}), ErrTypeValidation, 400,
			vmsg("'"+long+"'", "resource", "Member must have length less than or equal to 256"))
	})
	t.Run("bad resource and bad tags together", func(t *testing.T) {
		check(t, e.TagResource(ctx, "arn:x", map[string]string{"#": "v"}), ErrTypeValidation, 400,
			"2 validation errors detected: Value 'arn:x' at 'resource' failed to satisfy constraint: Member must satisfy regular expression pattern: "+patResource+
				"; Value '{#=v}' at 'tags' failed to satisfy constraint: "+tagKeysConstraint)
	})
	t.Run("unknown mapping", func(t *testing.T) {
		check(t, e.TagResource(ctx, missing, map[string]string{"a": "b"}), ErrTypeResourceNotFound, 404, "Event source mapping not found: "+missing)
	})
	// The limit counts the tags the mapping would carry: 49 + 1 new is
	// fine, a second new one is not, and replacing a tag adds none.
	if err := e.TagResource(ctx, m.Arn, map[string]string{"new1": "v", "k00": "w"}); err != nil {
		t.Fatalf("50th tag: %v", err)
	}
	check(t, e.TagResource(ctx, m.Arn, map[string]string{"new2": "v"}), ipv, 400, tooManyTags)
	if err := e.TagResource(ctx, m.Arn, map[string]string{"k01": "x"}); err != nil {
		t.Errorf("replacing a tag at the limit: %v", err)
	}
	tags, _ := e.ListTags(ctx, m.Arn)
	if len(tags) != 50 || tags["k00"] != "w" || tags["k01"] != "x" || tags["new2"] != "" {
		t.Errorf("tags after the refusals: %d, k00=%q k01=%q", len(tags), tags["k00"], tags["k01"])
	}
}

func TestUntagResourceRules(t *testing.T) {
	ctx := context.Background()
	e := newTestEngine(t)
	m, err := e.Create(ctx, &Config{FunctionName: sp("f"), EventSourceArn: sp(sqsArn), Tags: map[string]string{"a": "b"}})
	if err != nil {
		t.Fatal(err)
	}
	for name, keys := range map[string][]string{"nil": nil, "empty": {}} {
		t.Run(name, func(t *testing.T) {
			ae := asAPIError(t, e.UntagResource(ctx, m.Arn, keys))
			if want := vmsg("null", "tagKeys", "Member must not be null"); ae.Type != ErrTypeValidation || ae.Message != want {
				t.Errorf("got %s %q, want %q", ae.Type, ae.Message, want)
			}
		})
	}
	long := m.Arn + strings.Repeat("0", 257-len(m.Arn))
	ae := asAPIError(t, e.UntagResource(ctx, long, []string{"a"}))
	if want := vmsg("'"+long+"'", "resource", "Member must have length less than or equal to 256"); ae.Message != want {
		t.Errorf("got %q", ae.Message)
	}
	if tags, _ := e.ListTags(ctx, m.Arn); tags["a"] != "b" {
		t.Errorf("a refused untag removed a tag: %v", tags)
	}
}
