package bench

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// reportHTML is the report's page: its script draws the charts (SVG) from
// the result embedded in it, so the page needs no network.
//
//go:embed report.html
var reportHTML []byte

// ReportFile is the report's file name in the --report directory.
const ReportFile = "index.html"

// WriteReport writes the self-contained HTML report of res, and the result
// as JSON beside it (result.json), into dir.
func WriteReport(dir string, res *Result) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	page, err := Report(res)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, ReportFile), page, 0o644); err != nil {
		return err
	}
	js, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "result.json"), append(js, '\n'), 0o644)
}

// Report returns the HTML report of res. json.Marshal escapes <, > and &,
// so the result cannot end the script element it is embedded in.
func Report(res *Result) ([]byte, error) {
	js, err := json.Marshal(res)
	if err != nil {
		return nil, err
	}
	const slot = "/*DATA*/null"
	if bytes.Count(reportHTML, []byte(slot)) != 1 {
		return nil, fmt.Errorf("report template: want one %s", slot)
	}
	return bytes.Replace(reportHTML, []byte(slot), js, 1), nil
}
