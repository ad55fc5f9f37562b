package filter_test

import (
	"errors"
	"fmt"

	"github.com/esmd/esmd/filter"
)

func ExampleCompile() {
	m, err := filter.Compile([]string{
		`{"body":{"RecordNumber":[{"numeric":[">",9999]}]}}`,
		`{"attributes":{"ApproximateReceiveCount":[{"anything-but":["1"]}]}}`,
	})
	if err != nil {
		panic(err)
	}
	rec := []byte(`{"messageId":"1","body":"{\"RecordNumber\":10000}","attributes":{"ApproximateReceiveCount":"1"},"eventSource":"aws:sqs"}`)
	ok, err := m.Match(filter.SourceSQS, rec)
	fmt.Println(ok, err)
	// Output: true <nil>
}

func ExamplePatternError() {
	_, err := filter.Compile([]string{`{"eventSource":"aws:sqs"}`})
	var pe *filter.PatternError
	if errors.As(err, &pe) {
		fmt.Println(filter.InvalidPatternMessage) // what the API returns
		fmt.Println(pe.Message())                 // what esmd filter shows
	}
	// Output:
	// Invalid filter pattern definition.
	// Event pattern is not valid. Reason: "eventSource" must be an object or an array
}
