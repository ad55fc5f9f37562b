package filtercli

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func run(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestMainCommand(t *testing.T) {
	dir := t.TempDir()
	pfile := filepath.Join(dir, "p.json")
	if err := os.WriteFile(pfile, []byte(`{"detail":{"state":[{"anything-but":"initializing"}]}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	efile := filepath.Join(dir, "e.json")
	if err := os.WriteFile(efile, []byte(`{"detail":{"state":"running"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	sqs := `{"messageId":"1","body":"{\"RequestCode\":\"AAAA\"}","eventSource":"aws:sqs"}`
	kin := `{"kinesis":{"partitionKey":"1","data":"` + base64.StdEncoding.EncodeToString([]byte(`{"order":{"type":"buy"}}`)) + `"},"eventSource":"aws:kinesis"}`
	cases := []struct {
		name     string
		stdin    string
		args     []string
		code     int
		out, err string
	}{
		{"match", "", []string{"--pattern", `{"a":["x"]}`, "--event", `{"a":"x"}`}, 0, "match\n", ""},
		{"no match", "", []string{"--pattern", `{"a":["x"]}`, "--event", `{"a":"y"}`}, 1, "no match\n", ""},
		{"files", "", []string{"--pattern", "@" + pfile, "--event", "@" + efile}, 0, "match\n", ""},
		{"stdin event", `{"a":"x"}`, []string{"--pattern", `{"a":["x"]}`, "--event", "-"}, 0, "match\n", ""},
		{"stdin pattern", `{"a":["x"]}`, []string{"--pattern", "@-", "--event", `{"a":"x"}`}, 0, "match\n", ""},
		{"ored patterns", "", []string{"--pattern", `{"a":["x"]}`, "--pattern", `{"b":[{"numeric":[">",1]}]}`, "--event", `{"b":2}`}, 0, "match\n", ""},
		{"invalid pattern", "", []string{"--pattern", `{"int": 42}`, "--event", `{}`}, 2, "", `Event pattern is not valid. Reason: "int" must be an object or an array`},
		{"invalid json pattern", "", []string{"--pattern", `{'bad': 'quotation'}`, "--event", `{}`}, 2, "", "line: 1, column: 2"},
		{"api message", "", []string{"--pattern", `{"eventSource":[]}`, "--event", `{}`}, 2, "", "Invalid filter pattern definition."},
		{"lambda dialect", "", []string{"--pattern", `{"a":[{"anything-but":{"prefix":"x"}}]}`, "--event", `{"a":"y"}`}, 2, "", "not supported by Lambda"},
		{"eventbridge dialect", "", []string{"--dialect", "eventbridge", "--pattern", `{"a":[{"anything-but":{"prefix":"x"}}]}`, "--event", `{"a":"y"}`}, 0, "match\n", ""},
		{"sqs body decoded", "", []string{"--source", "sqs", "--pattern", `{"body":{"RequestCode":["AAAA"]}}`, "--event", sqs}, 0, "match\n", ""},
		{"sqs no source", "", []string{"--pattern", `{"body":{"RequestCode":["AAAA"]}}`, "--event", sqs}, 1, "no match\n", ""},
		{"kinesis data", "", []string{"--source", "kinesis", "--pattern", `{"partitionKey":["1"],"data":{"order":{"type":["buy"]}}}`, "--event", kin}, 0, "match\n", ""},
		{"kinesis plain pattern rejected", "", []string{"--source", "kinesis", "--pattern", `{"data":["x"]}`, "--event", kin}, 2, "", "JSON pattern"},
		{"whole event", "", []string{"--source", "sqs", "--pattern", `{"body":{"RequestCode":["AAAA"]}}`, "--event", `{"Records":[` + sqs + `,{"messageId":"2","body":"hello"}]}`}, 0, "record 0: match\nrecord 1: no match\n", ""},
		{"missing event", "", []string{"--pattern", `{"a":["x"]}`}, 2, "", "required"},
		{"bad source", "", []string{"--source", "s3", "--pattern", `{"a":["x"]}`, "--event", `{}`}, 2, "", "unknown event source"},
		{"bad event", "", []string{"--pattern", `{"a":["x"]}`, "--event", `{"a":`}, 2, "", "not valid JSON"},
		{"too many", "", []string{"--max-filters", "1", "--pattern", `{"a":["x"]}`, "--pattern", `{"a":["y"]}`, "--event", `{}`}, 2, "", "exceeds"},
		{"unknown flag", "", []string{"--nope"}, 2, "", "flag provided but not defined"},
		{"missing file", "", []string{"--pattern", "@" + filepath.Join(dir, "none"), "--event", `{}`}, 2, "", "pattern 1"},
		{"help", "", []string{"-h"}, 0, "", "usage: esmd filter"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := run(t, c.stdin, c.args...)
			if code != c.code {
				t.Errorf("exit %d, want %d (stdout %q, stderr %q)", code, c.code, out, errOut)
			}
			if c.out != "" && out != c.out {
				t.Errorf("stdout %q, want %q", out, c.out)
			}
			if c.err != "" && !strings.Contains(errOut, c.err) {
				t.Errorf("stderr %q does not contain %q", errOut, c.err)
			}
		})
	}
}
