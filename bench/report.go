package bench

import "errors"

// WriteReport writes the HTML report of res into dir.
func WriteReport(dir string, res *Result) error { return errors.New("--report: not built yet") }
