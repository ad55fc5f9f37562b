package bench

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// TestReportEmbedsResult: the report carries the result as JSON that a
// setting cannot break out of, and result.json beside it is the same.
func TestReportEmbedsResult(t *testing.T) {
	res := &Result{Schema: 1, Settings: Settings{Source: "kafka", Filter: `</script><script>alert(1)</script>`},
		Rounds: []*Round{{Kind: "esmd", Index: 1, Delivered: 3, Wanted: 3}}}
	dir := t.TempDir()
	if err := WriteReport(dir, res); err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(filepath.Join(dir, ReportFile))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(page, []byte("<script>alert")) {
		t.Fatal("the filter setting ends the data script")
	}
	m := regexp.MustCompile(`(?s)<script type="application/json" id="data">(.*?)</script>`).FindSubmatch(page)
	if m == nil {
		t.Fatal("no data script")
	}
	var got Result
	if err := json.Unmarshal(m[1], &got); err != nil {
		t.Fatal(err)
	}
	if got.Settings.Filter != res.Settings.Filter || len(got.Rounds) != 1 || got.Rounds[0].Delivered != 3 {
		t.Errorf("embedded result %+v", got)
	}
	// Only the SVG namespace name is a URL, and it is never fetched.
	if loc := regexp.MustCompile(`(?i)(src|href)\s*=|url\(|@import|fetch\(|XMLHttpRequest`).Find(page); loc != nil {
		t.Errorf("the report loads something: %s", loc)
	}
	js, err := os.ReadFile(filepath.Join(dir, "result.json"))
	if err != nil {
		t.Fatal(err)
	}
	var side Result
	if err := json.Unmarshal(js, &side); err != nil || side.Settings.Filter != res.Settings.Filter {
		t.Errorf("result.json: %v %+v", err, side.Settings)
	}
}
