package dynamodbstreams

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddbs "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"

	"github.com/esmd/esmd/payload"
	"github.com/esmd/esmd/pollers/stream"
)

// fixed answers every request with one GetRecords response body.
type fixed []byte

func (f fixed) Do(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/x-amz-json-1.0"}},
		Body: io.NopCloser(bytes.NewReader(f)), ContentLength: int64(len(f)), Request: r}, nil
}

const testARN = "arn:aws:dynamodb:eu-west-1:123456789012:table/t/stream/2026-01-01T00:00:00.000"

// routes decodes body through the SDK route and through the raw route.
// raw reports whether the raw route took the page.
func routes(t testing.TB, body []byte) (sdk, viaRaw stream.Page, sdkErr, rawErr error, raw bool) {
	t.Helper()
	api := ddbs.New(ddbs.Options{Region: "eu-west-1", HTTPClient: fixed(body),
		Credentials: aws.AnonymousCredentials{}, RetryMaxAttempts: 1})
	c := &client{api: api, arn: testARN, region: "eu-west-1"}
	in := &ddbs.GetRecordsInput{ShardIterator: aws.String("it"), Limit: aws.Int32(1000)}
	// The SDK panics on some damaged responses ("ApproximateCreationDateTime":
	// "NaN": smithytime.ParseEpochSeconds); count that as an error of either
	// route (the raw route refuses such a page and hands it to the SDK).
	get := func(opts ...func(*ddbs.Options)) (res *ddbs.GetRecordsOutput, err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("panic: %v", p)
			}
		}()
		return api.GetRecords(context.Background(), in, opts...)
	}
	res, sdkErr := get()
	if sdkErr == nil {
		sdk = c.sdkRecords(res)
	}
	res, rawErr = get(withRawPage)
	if rawErr == nil {
		p, ok := res.ResultMetadata.Get(rawPageKey{}).(*rawPage)
		if ok {
			viaRaw, raw = c.rawRecords(p), true
		} else {
			viaRaw = c.sdkRecords(res)
		}
	}
	return sdk, viaRaw, sdkErr, rawErr, raw
}

// same fails unless both routes give the same records, byte for byte.
func same(t testing.TB, body []byte) (raw bool) {
	t.Helper()
	sdk, got, sdkErr, rawErr, raw := routes(t, body)
	if (sdkErr == nil) != (rawErr == nil) {
		t.Fatalf("SDK route error %v, raw route error %v (raw taken %v)\nbody %s", sdkErr, rawErr, raw, body)
	}
	if sdk.Next != got.Next || len(sdk.Records) != len(got.Records) {
		t.Fatalf("next %q, %d records; raw route next %q, %d records\nbody %s", sdk.Next, len(sdk.Records), got.Next, len(got.Records), body)
	}
	for i := range sdk.Records {
		w, g := &sdk.Records[i], &got.Records[i]
		wb, gb := w.Bytes(), g.Bytes()
		if !bytes.Equal(wb, gb) || g.Len() != len(gb) || w.Key != g.Key || w.ID != g.ID || w.Seq != g.Seq || !w.Arrival.Equal(g.Arrival) {
			t.Fatalf("record %d:\n SDK %s (key %s id %s arrival %v)\n raw %s (len %d, key %s id %s arrival %v)\nbody %s",
				i, wb, w.Key, w.ID, w.Arrival, gb, g.Len(), g.Key, g.ID, g.Arrival, body)
		}
		if raw && (g.Data != nil || g.Encoder == nil) {
			t.Fatalf("record %d of the raw route: Data %q, Encoder %v: want encoded on demand", i, g.Data, g.Encoder)
		}
		b := payload.NewBuilder(payload.Records(testARN))
		g.AddTo(b)
		if ev := b.Bytes(); len(ev) != b.Size() || !json.Valid(ev) {
			t.Fatalf("event of record %d: %d bytes, Size %d, valid %v", i, len(ev), b.Size(), json.Valid(ev))
		}
	}
	return raw
}

// recorded is the records of aws-lambda-go's recorded DynamoDB event
// (testdata/conformance/aws-lambda-go-events: aws-lambda-go's events
// testdata, copied as testdata/conformance/SOURCES.md says)
// as GetRecords gives them: compact, with no eventSourceARN and the
// Identity member names of the API.
func recorded(t testing.TB) []byte {
	b, err := os.ReadFile("../../testdata/conformance/aws-lambda-go-events/dynamodb-event.json")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		t.Fatal(err)
	}
	// Edited as text, to keep the recording's member order.
	out := regexp.MustCompile(`,"eventSourceARN":"[^"]*"`).ReplaceAllString(buf.String(), "")
	out = strings.ReplaceAll(out, `"userIdentity":{"type":`, `"userIdentity":{"Type":`)
	out = strings.ReplaceAll(out, `,"principalId":`, `,"PrincipalId":`)
	return []byte(strings.TrimSuffix(out, "}") + `,"NextShardIterator":"next"}`)
}

func TestRawMatchesSDK(t *testing.T) {
	rec := recorded(t)
	cases := []struct {
		name string
		body string
		raw  bool // the raw route takes it
	}{
		{"recorded", string(rec), true},
		{"empty", `{"Records":[]}`, true},
		{"end of shard", `{"Records":[],"NextShardIterator":null}`, true},
		{"no dynamodb", `{"Records":[{"eventID":"1","eventName":"INSERT"}],"NextShardIterator":"n"}`, true},
		{"minimal", `{"Records":[{"dynamodb":{}}]}`, true},
		{"empty images", `{"Records":[{"dynamodb":{"Keys":{},"NewImage":{},"OldImage":{}}}]}`, true},
		{"unsorted nested", `{"Records":[{"awsRegion":"us-east-2","dynamodb":{"ApproximateCreationDateTime":1.479499740E9,` +
			`"Keys":{"z":{"N":"1"},"a":{"S":"x"}},"NewImage":{"m":{"M":{"y":{"L":[{"M":{"q":{"NULL":true},"p":{"BOOL":false}}}]},"b":{"SS":[]}}},` +
			"\"é\":{\"S\":\"ü\u2028\"}," + `"e":{"BS":["AP8=","YQ=="]}},"SequenceNumber":"1","SizeBytes":9,"StreamViewType":"NEW_IMAGE"},` +
			`"eventID":"e","eventName":"MODIFY","eventSource":"aws:dynamodb","eventVersion":"1.0"}]}`, true},
		{"fractional time", `{"Records":[{"dynamodb":{"ApproximateCreationDateTime":1700000000.999,"SequenceNumber":"5"}}]}`, true},
		{"TTL", `{"Records":[{"userIdentity":{"Type":"Service","PrincipalId":"dynamodb.amazonaws.com"},"dynamodb":{"Keys":{"id":{"N":"101"}}}}]}`, true},
		{"empty identity", `{"Records":[{"userIdentity":{},"dynamodb":{}}]}`, true},
		{"escaped string", `{"Records":[{"dynamodb":{"Keys":{"k":{"S":"a\"b\u0001"}}}}]}`, false},
		{"escaped name", `{"Records":[{"dynamodb":{"Keys":{"\u006b":{"S":"a"}}}}]}`, false},
		{"invalid UTF-8", "{\"Records\":[{\"dynamodb\":{\"Keys\":{\"k\":{\"S\":\"a\xffb\"}}}}]}", false},
		{"whitespace", `{"Records": [{"dynamodb":{}}]}`, false},
		{"loose base64", `{"Records":[{"dynamodb":{"Keys":{"k":{"B":"AP9="}}}}]}`, false},
		{"bad base64", `{"Records":[{"dynamodb":{"Keys":{"k":{"B":"A"}}}}]}`, false},
		{"duplicate name", `{"Records":[{"dynamodb":{"Keys":{"b":{"S":"1"},"a":{"S":"2"},"b":{"S":"3"}}}}]}`, false},
		{"two members", `{"Records":[{"dynamodb":{"Keys":{"k":{"S":"1","N":"2"}}}}]}`, false},
		{"no member", `{"Records":[{"dynamodb":{"Keys":{"a":{"S":"1"},"k":{}}}}]}`, false},
		{"null value", `{"Records":[{"dynamodb":{"Keys":{"k":null}}}]}`, false},
		{"null in set", `{"Records":[{"dynamodb":{"Keys":{"k":{"SS":["a",null]}}}}]}`, false},
		{"unknown field", `{"Records":[{"dynamodb":{},"extra":1}]}`, false},
		{"unknown type", `{"Records":[{"dynamodb":{"Keys":{"k":{"X":"1"}}}}]}`, false},
		{"string time", `{"Records":[{"dynamodb":{"ApproximateCreationDateTime":"NaN"}}]}`, false},
		{"float size", `{"Records":[{"dynamodb":{"SizeBytes":1.5}}]}`, false},
		{"truncated", `{"Records":[{"dynamodb":{}`, false},
		{"not JSON", `<html>`, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if raw := same(t, []byte(c.body)); raw != c.raw {
				t.Errorf("raw route taken %v, want %v", raw, c.raw)
			}
		})
	}
}

// TestDamagedResponseIsAnError checks that a response the SDK panics on
// is a GetRecords error of the poller, not a crash.
func TestDamagedResponseIsAnError(t *testing.T) {
	body := fixed(`{"Records":[{"dynamodb":{"ApproximateCreationDateTime":"NaN"}}]}`)
	c := &client{api: ddbs.New(ddbs.Options{Region: "eu-west-1", HTTPClient: body, Credentials: aws.AnonymousCredentials{},
		RetryMaxAttempts: 1}), arn: testARN, region: "eu-west-1"}
	_, err := c.Read(context.Background(), "shard-1", "it", 1000)
	if !errors.Is(err, errDecode) || c.Classify(err) != stream.Other {
		t.Fatalf("Read: %v, want errDecode classified Other", err)
	}
}

// genBody builds a GetRecords response of random records from r: members
// and names in random order, strings with escapes, non-ASCII and invalid
// UTF-8 now and then.
func genBody(r *rand.Rand) []byte {
	var b strings.Builder
	str := func() string {
		alpha := []string{"a", "b", "k", "é", "\u2028", "\"", "\\", "\n", "\x01", "\xff", "0", "Z", "<"}
		n := r.IntN(4)
		var s strings.Builder
		for range n {
			c := alpha[r.IntN(len(alpha))]
			if r.IntN(6) > 0 && len(c) == 1 && c[0] >= 'a' {
				s.WriteString(c)
				continue
			}
			if r.IntN(3) == 0 {
				s.WriteString(c)
			} else {
				s.WriteString("a")
			}
		}
		q, _ := json.Marshal(s.String())
		if r.IntN(20) == 0 {
			return `"` + s.String() + `"` // raw, maybe invalid JSON
		}
		if r.IntN(10) == 0 {
			return `"` + strings.ReplaceAll(s.String(), `"`, `\"`) + `"`
		}
		return string(q)
	}
	var value func(depth int) string
	attrMap := func(depth int) string {
		n := r.IntN(4)
		var m strings.Builder
		m.WriteByte('{')
		for i := range n {
			if i > 0 {
				m.WriteByte(',')
			}
			m.WriteString(str())
			m.WriteByte(':')
			m.WriteString(value(depth + 1))
		}
		m.WriteByte('}')
		return m.String()
	}
	blob := func() string {
		v := make([]byte, r.IntN(5))
		for i := range v {
			v[i] = byte(r.Uint32())
		}
		s := base64.StdEncoding.EncodeToString(v)
		if r.IntN(15) == 0 && len(s) > 0 {
			s = s[:len(s)-1] + "A"
		}
		return `"` + s + `"`
	}
	list := func(elem func() string) string {
		n := r.IntN(3)
		parts := make([]string, n)
		for i := range parts {
			parts[i] = elem()
		}
		return "[" + strings.Join(parts, ",") + "]"
	}
	value = func(depth int) string {
		k := r.IntN(10)
		if depth > 3 && k >= 8 {
			k = 0
		}
		switch k {
		case 0:
			return `{"S":` + str() + `}`
		case 1:
			return fmt.Sprintf(`{"N":"%d"}`, r.IntN(1000)-500)
		case 2:
			return `{"B":` + blob() + `}`
		case 3:
			return fmt.Sprintf(`{"BOOL":%v}`, r.IntN(2) == 0)
		case 4:
			return `{"NULL":true}`
		case 5:
			return `{"SS":` + list(str) + `}`
		case 6:
			return `{"BS":` + list(blob) + `}`
		case 7:
			return `{"NS":["1","2.5"]}`
		case 8:
			return `{"M":` + attrMap(depth) + `}`
		default:
			return `{"L":` + list(func() string { return value(depth + 1) }) + `}`
		}
	}
	members := func(ms []string) string {
		r.Shuffle(len(ms), func(i, j int) { ms[i], ms[j] = ms[j], ms[i] })
		keep := ms[:0]
		for _, m := range ms {
			if r.IntN(8) > 0 {
				keep = append(keep, m)
			}
		}
		return "{" + strings.Join(keep, ",") + "}"
	}
	b.WriteString(`{"Records":[`)
	for i := range r.IntN(4) {
		if i > 0 {
			b.WriteByte(',')
		}
		ddb := members([]string{
			fmt.Sprintf(`"ApproximateCreationDateTime":%s`, []string{"1700000000", "1.7000000015E9", "1700000000.5", "0", "-1.25"}[r.IntN(5)]),
			`"Keys":` + attrMap(0), `"NewImage":` + attrMap(0), `"OldImage":` + attrMap(0),
			`"SequenceNumber":` + str(), fmt.Sprintf(`"SizeBytes":%d`, r.IntN(400000)), `"StreamViewType":"NEW_AND_OLD_IMAGES"`,
		})
		b.WriteString(members([]string{
			`"awsRegion":` + str(), `"eventID":` + str(), `"eventName":"INSERT"`, `"eventSource":"aws:dynamodb"`,
			`"eventVersion":` + str(), `"userIdentity":{"Type":` + str() + `,"PrincipalId":` + str() + `}`, `"dynamodb":` + ddb,
		}))
	}
	b.WriteString(`],"NextShardIterator":"it"}`)
	return []byte(b.String())
}

func TestRawMatchesSDKGenerated(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	taken := 0
	for range 2000 {
		if same(t, genBody(r)) {
			taken++
		}
	}
	if taken < 200 {
		t.Errorf("the raw route took %d of 2000 generated pages: the generator barely tests it", taken)
	}
}

func FuzzRawRecords(f *testing.F) {
	f.Add(recorded(f))
	f.Add([]byte(`{"Records":[{"dynamodb":{"Keys":{"b":{"S":"1"},"a":{"M":{"y":{"N":"1"},"x":{"L":[{"BS":["YQ=="]}]}}}}}}]}`))
	r := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		f.Add(genBody(r))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		same(t, body)
	})
}

// benchBody is a GetRecords response of 1,000 INSERTs shaped like esmd
// bench's (an id key; an image of id, bk, kind and a pad to about 1 KiB),
// the image's names out of order as a server may send them.
func benchBody() []byte {
	var b strings.Builder
	b.WriteString(`{"Records":[`)
	pad := strings.Repeat("x", 900)
	for i := range 1000 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"awsRegion":"us-east-1","dynamodb":{"ApproximateCreationDateTime":1.7000000E9,`+
			`"Keys":{"id":{"S":"%[1]d"}},"NewImage":{"pad":{"S":"%[2]s"},"id":{"S":"%[1]d"},"kind":{"S":"match"},"bk":{"S":"esmd-bench:%[1]d:0000000000"}},`+
			`"SequenceNumber":"%[3]d","SizeBytes":1000,"StreamViewType":"NEW_IMAGE"},"eventID":"%032[1]x","eventName":"INSERT",`+
			`"eventSource":"aws:dynamodb","eventVersion":"1.1"}`, i, pad, 100000000000000000+i)
	}
	b.WriteString(`],"NextShardIterator":"next"}`)
	return []byte(b.String())
}

// BenchmarkGetRecordsEncode measures one GetRecords page of 1,000 records
// from the response's bytes to the encoded events (10 of BatchSize 100),
// through the SDK route and the raw route.
func BenchmarkGetRecordsEncode(b *testing.B) {
	body := benchBody()
	for _, route := range []string{"sdk", "raw"} {
		b.Run(route, func(b *testing.B) {
			api := ddbs.New(ddbs.Options{Region: "us-east-1", HTTPClient: fixed(body),
				Credentials: aws.AnonymousCredentials{}, RetryMaxAttempts: 1})
			c := &client{api: api, arn: testARN, region: "us-east-1"}
			in := &ddbs.GetRecordsInput{ShardIterator: aws.String("it"), Limit: aws.Int32(1000)}
			var opts []func(*ddbs.Options)
			if route == "raw" {
				opts = append(opts, withRawPage)
			}
			var event []byte
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				res, err := api.GetRecords(context.Background(), in, opts...)
				if err != nil {
					b.Fatal(err)
				}
				p, ok := res.ResultMetadata.Get(rawPageKey{}).(*rawPage)
				var page stream.Page
				if ok {
					page = c.rawRecords(p)
				} else {
					page = c.sdkRecords(res)
				}
				if len(page.Records) != 1000 || ok != (route == "raw") {
					b.Fatalf("%d records, raw route %v", len(page.Records), ok)
				}
				for i := 0; i < len(page.Records); i += 100 {
					bl := payload.NewBuilder(payload.Records(testARN))
					for j := i; j < i+100; j++ {
						page.Records[j].AddTo(bl)
					}
					event = bl.AppendTo(event[:0])
				}
			}
		})
	}
}
