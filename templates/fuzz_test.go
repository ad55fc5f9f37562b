package templates

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds damaged templates to Parse: it must return, never panic
// or run away, whatever the input.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*"))
	for _, name := range files {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("Resources:\n  A: &a {Type: AWS::SQS::Queue, Properties: {QueueName: !Sub '${B.QueueName}'}}\n  B: *a\n"))
	f.Add([]byte("service: s\ncustom: {a: '${self:custom.a}x'}\nfunctions: {f: {events: [{sqs: '${self:custom.a}'}]}}\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		opts := Options{LookupEnv: func(string) (string, bool) { return "v", true },
			Resources: map[string]string{"OrdersTable.StreamArn": "arn:aws:dynamodb:us-east-1:000000000000:table/t/stream/x"}}
		tmpl, err := Parse("f.yaml", src, opts)
		if err == nil && tmpl == nil {
			t.Fatal("nil template and nil error")
		}
	})
}

// FuzzParameterOverrides: any --parameter-overrides text is read or
// refused, never a panic.
func FuzzParameterOverrides(f *testing.F) {
	for _, s := range []string{`A=b C="d e"`, `ParameterKey=A,ParameterValue="x\"y" B=`, `"`, `=`, `ParameterKey=`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_ = ParseParameterOverrides(s, map[string]string{})
	})
}
