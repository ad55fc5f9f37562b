package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/esmd/esmd/bench"
	"github.com/esmd/esmd/internal/testenv"
)

// asEsmd, set to 1 in a child's environment, makes the test binary run
// as esmd (TestMain), so esmd bench's children are this very build.
const asEsmd = "ESMD_TEST_AS_ESMD"

func asEsmdMain() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// runBench runs esmd bench with args through run (as the binary does),
// its children being this test binary, and returns the JSON result.
func runBench(t *testing.T, args ...string) (*bench.Result, string) {
	t.Helper()
	t.Setenv(asEsmd, "1")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	benchExe = exe
	t.Cleanup(func() { benchExe = "" })
	out := filepath.Join(t.TempDir(), "result.json")
	var stdout, stderr bytes.Buffer
	args = append([]string{"bench", "--json", out, "--timeout", "60s"}, args...)
	if code := run(t.Context(), args, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("esmd %v: exit %d\n%s\n%s", args, code, stdout.String(), stderr.String())
	}
	t.Log(stdout.String())
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var res bench.Result
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	return &res, stdout.String()
}

// checkRounds asserts that every round delivered each wanted record once,
// in batches no larger than BatchSize, and measured the child.
func checkRounds(t *testing.T, res *bench.Result, kinds ...string) {
	t.Helper()
	if len(res.Rounds) != len(kinds) {
		t.Fatalf("%d rounds, want %v", len(res.Rounds), kinds)
	}
	for i, r := range res.Rounds {
		if r.Kind != kinds[i] {
			t.Errorf("round %d is %s, want %s", i, r.Kind, kinds[i])
		}
		if r.Delivered != r.Wanted || r.Lost != 0 || r.FilteredIn != 0 || r.Errors != 0 || r.TimedOut {
			t.Errorf("%s round %d: delivered %d of %d, lost %d, filtered in %d, errors %d, timed out %v: %s",
				r.Kind, r.Index, r.Delivered, r.Wanted, r.Lost, r.FilteredIn, r.Errors, r.TimedOut, r.ExitError)
		}
		if r.Invocations == 0 || r.BatchSize.Max > int64(res.Settings.BatchSize) || r.BatchSize.Max < 1 {
			t.Errorf("%s round %d: %d invocations, largest batch %d (BatchSize %d)", r.Kind, r.Index, r.Invocations, r.BatchSize.Max, res.Settings.BatchSize)
		}
		if r.Latency.Count != uint64(r.Delivered) || r.CPUSeconds <= 0 || r.PeakRSSBytes <= 0 || len(r.Series) == 0 {
			t.Errorf("%s round %d: latency count %d, CPU %v s, peak RSS %d, %d points", r.Kind, r.Index, r.Latency.Count, r.CPUSeconds, r.PeakRSSBytes, len(r.Series))
		}
	}
}

// TestBenchKafkaEmbedded runs the embedded default (in-process Kafka,
// built-in function) small, with a filter, and checks every record is
// accounted for.
func TestBenchKafkaEmbedded(t *testing.T) {
	testenv.Skip(t)
	report := t.TempDir()
	res, out := runBench(t, "--records", "3000", "--record-size", "200", "--batch-size", "50", "--window", "0s",
		"--partitions", "3", "--match-share", "0.5", "--report", report)
	checkRounds(t, res, "esmd")
	checkReport(t, filepath.Join(report, bench.ReportFile), res)
	r := res.Rounds[0]
	if r.Wanted < 1400 || r.Wanted > 1600 {
		t.Errorf("%d records match, want about half of 3000", r.Wanted)
	}
	if !bytes.Contains([]byte(out), []byte("records      "+strconv.FormatInt(r.Wanted, 10)+" of "+strconv.FormatInt(r.Wanted, 10)+" delivered")) {
		t.Errorf("summary does not say every record was delivered:\n%s", out)
	}
}

// TestBenchKafkaCompareRaw alternates esmd with the raw franz-go loop at a
// fixed rate, batch size 1.
func TestBenchKafkaCompareRaw(t *testing.T) {
	testenv.Skip(t)
	res, out := runBench(t, "--records", "400", "--rate", "400", "--batch-size", "1", "--window", "0s",
		"--partitions", "2", "--compare", "raw", "--rounds", "2")
	checkRounds(t, res, "esmd", "raw", "raw", "esmd")
	if c := res.Compare; c == nil || len(c.Ratios) != 2 || c.Ratio <= 0 {
		t.Fatalf("compare = %+v", res.Compare)
	}
	if !bytes.Contains([]byte(out), []byte("esmd/raw ratio")) {
		t.Errorf("summary has no ratio:\n%s", out)
	}
}

// TestBenchSQS runs esmd and the raw SDK loop against fauxqs.
func TestBenchSQS(t *testing.T) {
	testenv.Skip(t)
	t.Setenv("AWS_ENDPOINT_URL_SQS", testenv.FauxQS(t))
	res, _ := runBench(t, "--source", "sqs", "--records", "300", "--record-size", "200", "--batch-size", "10",
		"--compare", "raw", "--rounds", "1", "--match-share", "0.8")
	checkRounds(t, res, "esmd", "raw")
}

// TestBenchKinesis runs esmd and the raw SDK loop against kinesis-mock.
func TestBenchKinesis(t *testing.T) {
	testenv.Skip(t)
	t.Setenv("AWS_ENDPOINT_URL_KINESIS", testenv.Kinesis(t))
	res, _ := runBench(t, "--source", "kinesis", "--records", "200", "--record-size", "200", "--batch-size", "50",
		"--shards", "2", "--compare", "raw", "--rounds", "1")
	checkRounds(t, res, "esmd", "raw")
}

// TestBenchRabbitMQ runs esmd and the raw amqp091-go loop against
// RabbitMQ, in a virtual host other than "/".
func TestBenchRabbitMQ(t *testing.T) {
	testenv.Skip(t)
	b := testenv.RabbitMQ(t)
	res, _ := runBench(t, "--source", "rabbitmq", "--broker", "amqp://"+testenv.RabbitMQUser+":"+testenv.RabbitMQPassword+"@"+b.Addr+"/"+testenv.RabbitMQVHost,
		"--records", "300", "--record-size", "200", "--batch-size", "20", "--window", "0s", "--compare", "raw", "--rounds", "1", "--match-share", "0.7")
	checkRounds(t, res, "esmd", "raw")
}

// TestBenchActiveMQ runs esmd and the raw go-stomp loop against ActiveMQ.
func TestBenchActiveMQ(t *testing.T) {
	testenv.Skip(t)
	b := testenv.ActiveMQ(t)
	res, _ := runBench(t, "--source", "activemq", "--broker", "stomp://"+testenv.ActiveMQUser+":"+testenv.ActiveMQPassword+"@"+b.STOMPAddr,
		"--records", "300", "--record-size", "200", "--batch-size", "20", "--window", "0s", "--compare", "raw", "--rounds", "1")
	checkRounds(t, res, "esmd", "raw")
}

// checkReport opens the HTML report in headless Chromium and checks, in
// the DOM after the page's script ran, that every chart was drawn with the
// run's numbers.
func checkReport(t *testing.T, page string, res *bench.Result) {
	t.Helper()
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is not on PATH: run scripts/install-test-deps.sh")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
		"--user-data-dir="+t.TempDir(), "--dump-dom", "file://"+page)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	dom, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	svg := func(id string) map[string]string {
		m := regexp.MustCompile(`<svg id="` + regexp.QuoteMeta(id) + `"([^>]*)>`).FindSubmatch(dom)
		if m == nil {
			t.Fatalf("no chart %s in the DOM", id)
		}
		attrs := map[string]string{}
		for _, a := range regexp.MustCompile(`([a-z-]+)="([^"]*)"`).FindAllSubmatch(m[1], -1) {
			attrs[string(a[1])] = string(a[2])
		}
		if attrs["data-rendered"] != "true" {
			t.Errorf("chart %s was not drawn", id)
		}
		return attrs
	}
	tp := svg("throughput")
	if tp["data-series"] != strconv.Itoa(len(res.Rounds)) {
		t.Errorf("throughput chart: %s lines, want one per round (%d)", tp["data-series"], len(res.Rounds))
	}
	for i, r := range res.Rounds {
		var maxRate float64
		for _, p := range r.Series {
			maxRate = max(maxRate, p.RecordsPerSecond)
		}
		if got, _ := strconv.ParseFloat(tp["data-ymax"], 64); i == 0 && got < maxRate {
			t.Errorf("throughput chart's top %v is below round %d's peak %v", got, i, maxRate)
		}
		if lines := regexp.MustCompile(`<polyline[^>]*data-label="` + r.Kind + ` ` + strconv.Itoa(r.Index) + `" data-points="(\d+)"`).FindSubmatch(dom); lines == nil || string(lines[1]) != strconv.Itoa(len(r.Series)) {
			t.Errorf("throughput line of %s %d: %q, want %d points", r.Kind, r.Index, lines, len(r.Series))
		}
		n := strconv.Itoa(i)
		svg("latency-" + n)
		if got := svg("latency-hist-" + n)["data-count"]; got != strconv.FormatInt(r.Delivered, 10) {
			t.Errorf("latency histogram of round %d counts %s records, want %d", i, got, r.Delivered)
		}
		if got := svg("batch-hist-" + n)["data-count"]; got != strconv.FormatInt(r.Invocations, 10) {
			t.Errorf("batch-size histogram of round %d counts %s invocations, want %d", i, got, r.Invocations)
		}
		want := fmt.Sprintf("<td>%d/%d</td>", r.Delivered, r.Wanted)
		if !bytes.Contains(dom, []byte(want)) {
			t.Errorf("rounds table has no %s", want)
		}
	}
	if !bytes.Contains(dom, []byte(`<td class="l">batch_size</td><td>`+strconv.Itoa(res.Settings.BatchSize)+`</td>`)) {
		t.Errorf("settings table has no batch_size %d", res.Settings.BatchSize)
	}
}

// TestBenchDynamoDB runs esmd and the raw SDK loop on the in-process
// DynamoDB Streams server the bench starts, with a filter.
func TestBenchDynamoDB(t *testing.T) {
	testenv.Skip(t)
	res, _ := runBench(t, "--source", "dynamodb", "--records", "300", "--record-size", "200", "--batch-size", "50",
		"--shards", "2", "--compare", "raw", "--rounds", "1", "--match-share", "0.6")
	checkRounds(t, res, "esmd", "raw")
}

// TestBenchDocumentDB runs esmd and the raw mongo-driver loop on the
// MongoDB wire-protocol server of --docdb-uri (testenv.Mongo).
func TestBenchDocumentDB(t *testing.T) {
	testenv.Skip(t)
	srv := testenv.Mongo(t)
	res, _ := runBench(t, "--source", "documentdb", "--docdb-uri", srv.UserURI(testenv.MongoUser, testenv.MongoPassword),
		"--records", "300", "--record-size", "200", "--batch-size", "50", "--compare", "raw", "--rounds", "1")
	checkRounds(t, res, "esmd", "raw")
}

// TestBenchRealFunction invokes a real function (aws-lambda-go under the
// Runtime Interface Emulator, --invoke-mode rie) through the bench's
// counting endpoint, from esmd and from the raw loop.
func TestBenchRealFunction(t *testing.T) {
	testenv.Skip(t)
	res, _ := runBench(t, "--lambda-endpoint", testenv.RIE(t), "--invoke-mode", "rie",
		"--records", "200", "--record-size", "200", "--batch-size", "20", "--partitions", "2", "--compare", "raw", "--rounds", "1")
	checkRounds(t, res, "esmd", "raw")
	for _, r := range res.Rounds {
		if r.InvokeDuration.Count != uint64(r.Invocations) {
			t.Errorf("%s: %d invoke durations for %d invocations", r.Kind, r.InvokeDuration.Count, r.Invocations)
		}
	}
}

// TestBenchScale runs scale mode small: every lane gets its record, esmd's
// metrics list every lane, and the figures are filled in.
func TestBenchScale(t *testing.T) {
	testenv.Skip(t)
	res, _ := runBench(t, "--lanes", "40", "--trickle", "20", "--measure", "2s", "--record-size", "100")
	s := res.Scale
	if s == nil {
		t.Fatal("no scale result")
	}
	if s.LanesSeen != 40 || s.Delivered != s.Wanted || s.Wanted != 40+2*20 {
		t.Errorf("lanes seen %d of 40, delivered %d of %d (want 80)", s.LanesSeen, s.Delivered, s.Wanted)
	}
	if s.BaselineRSSBytes <= 0 || s.LanesRSSBytes <= 0 || s.PeakRSSBytes < s.LanesRSSBytes || s.Goroutines <= s.BaselineGoroutines || s.MeasureSeconds < 2 {
		t.Errorf("scale figures %+v", *s)
	}
}
