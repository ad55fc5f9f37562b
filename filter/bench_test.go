package filter

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// A seeded generator of citylots-shaped GeoJSON features (the corpus the
// reference engines benchmark on is not redistributable). Each feature is
// one line; the generator also keeps the field values so that expected
// match counts are computed independently of the matcher.

type feature struct {
	mapblklot string
	street    string
	stType    string // "" means null
	owner     bool   // optional field present
	geomType  string
	x, y      int64 // first coordinate in millionths (rounded)
	coordsX   []int64
}

type corpus struct {
	feats []feature
	lines [][]byte
	bytes int
}

var streets = []string{
	"UNKNOWN", "FULTON", "MASON", "JEFFERSON", "BEACH", "HYDE", "CHESTNUT", "GREENWICH", "BLUXOME", "ACTON",
	"DRUMM", "RHODE ISLAND", "MARKET", "MISSION", "VALENCIA", "GEARY", "POST", "SUTTER", "BUSH", "PINE",
	"CALIFORNIA", "SACRAMENTO", "CLAY", "WASHINGTON", "JACKSON", "PACIFIC", "BROADWAY", "VALLEJO", "GREEN", "UNION",
	"FILBERT", "LOMBARD", "BAY", "NORTH POINT", "FRANCISCO", "STOCKTON", "POWELL", "TAYLOR", "JONES", "LEAVENWORTH",
	"HOWARD", "FOLSOM", "HARRISON", "BRYANT", "BRANNAN", "TOWNSEND", "KING", "BERRY", "CHANNEL", "ALAMEDA",
	"BLAKE", "ACADIA", "DRAKE", "FUNSTON", "RHINE", "MAYFLOWER", "BELVEDERE", "HAYES", "CHURCH", "DOLORES",
}

var stTypes = []string{"ST", "ST", "ST", "AVE", "AVE", "WAY", "BLVD", "TER", "PL", "CT", ""}

// coord formats a coordinate with 14 decimals whose rounding to six is
// known exactly: micro millionths plus eight more digits, never a tie.
func coord(r *rand.Rand, micro int64) (string, int64) {
	extra := r.Int64N(100_000_000)
	if extra > 49_990_000 && extra < 50_010_000 {
		extra = 12_345_678
	}
	neg := micro < 0
	abs := micro
	if neg {
		abs = -micro
	}
	text := fmt.Sprintf("%d.%06d%08d", abs/1_000_000, abs%1_000_000, extra)
	rounded := abs
	if extra > 50_000_000 || (!neg && extra >= 50_000_000) {
		rounded++
	}
	if neg {
		return "-" + text, -rounded
	}
	return text, rounded
}

func genCorpus(n int, withCoords bool, seed uint64) *corpus {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	c := &corpus{feats: make([]feature, n), lines: make([][]byte, n)}
	var buf []byte
	for i := range c.feats {
		f := &c.feats[i]
		block := r.IntN(8000)
		lot := r.IntN(300)
		f.mapblklot = fmt.Sprintf("%04d%03d", block, lot)
		if r.IntN(500) == 0 {
			f.mapblklot = "VACST" + strings.ToUpper(streets[r.IntN(len(streets))][:3])
		}
		f.street = streets[r.IntN(len(streets))]
		f.stType = stTypes[r.IntN(len(stTypes))]
		f.owner = r.IntN(10) == 0
		f.geomType = "Polygon"
		if r.IntN(4) == 0 {
			f.geomType = "MultiPolygon"
		}
		baseX := -122_520_000 + r.Int64N(160_000)
		baseY := 37_700_000 + r.Int64N(110_000)
		buf = buf[:0]
		buf = append(buf, `{"type":"Feature","properties":{"MAPBLKLOT":"`...)
		buf = append(buf, f.mapblklot...)
		buf = append(buf, `","BLKLOT":"`...)
		buf = append(buf, f.mapblklot...)
		buf = append(buf, `","BLOCK_NUM":"`...)
		buf = append(buf, f.mapblklot[:4]...)
		buf = append(buf, `","LOT_NUM":"`...)
		buf = append(buf, f.mapblklot[4:]...)
		buf = append(buf, `","FROM_ST":"`...)
		buf = strconv.AppendInt(buf, int64(r.IntN(3000)), 10)
		buf = append(buf, `","TO_ST":"`...)
		buf = strconv.AppendInt(buf, int64(r.IntN(3000)), 10)
		buf = append(buf, `","STREET":"`...)
		buf = append(buf, f.street...)
		buf = append(buf, `","ST_TYPE":`...)
		if f.stType == "" {
			buf = append(buf, "null"...)
		} else {
			buf = strconv.AppendQuote(buf, f.stType)
		}
		buf = append(buf, `,"ODD_EVEN":"`...)
		buf = append(buf, "EO"[lot%2])
		buf = append(buf, '"')
		if f.owner {
			buf = append(buf, `,"OWNER":"city"`...)
		}
		buf = append(buf, `},"geometry":{"type":"`...)
		buf = append(buf, f.geomType...)
		buf = append(buf, `","firstCoordinates":{"x":`...)
		xs, xr := coord(r, baseX)
		ys, yr := coord(r, baseY)
		f.x, f.y = xr, yr
		buf = append(buf, xs...)
		buf = append(buf, `,"y":`...)
		buf = append(buf, ys...)
		buf = append(buf, `,"z":0}`...)
		if withCoords {
			buf = append(buf, `,"coordinates":[[`...)
			pts := 4 + r.IntN(9)
			for p := 0; p < pts; p++ {
				if p > 0 {
					buf = append(buf, ',')
				}
				var cx string
				var cxr int64
				if p == 0 {
					cx, cxr = xs, xr
				} else {
					cx, cxr = coord(r, baseX+r.Int64N(400)-200)
				}
				cy, _ := coord(r, baseY+r.Int64N(400)-200)
				f.coordsX = append(f.coordsX, cxr)
				buf = append(buf, '[')
				buf = append(buf, cx...)
				buf = append(buf, ',')
				buf = append(buf, cy...)
				buf = append(buf, ",0]"...)
			}
			buf = append(buf, "]]"...)
		}
		buf = append(buf, "}}"...)
		c.lines[i] = append([]byte(nil), buf...)
		c.bytes += len(buf)
	}
	return c
}

// benchFilter is a pattern and the same condition in plain Go.
type benchFilter struct {
	pattern string
	pred    func(*feature) bool
}

func family(name string) []benchFilter {
	var fs []benchFilter
	add := func(p string, pred func(*feature) bool) { fs = append(fs, benchFilter{p, pred}) }
	prefixes := []string{"AC", "BL", "DR", "FU", "RH", "MA", "JE", "BE", "HY", "CH"}
	suffixes := []string{"ON", "KE", "MM", "ING", "GO", "ST", "ER", "AN", "AY", "EL"}
	for i := 0; i < 10; i++ {
		i := i
		switch name {
		case "exact":
			s := streets[1+i]
			add(`{"properties":{"STREET":["`+s+`"]}}`, func(f *feature) bool { return f.street == s })
		case "prefix":
			p := prefixes[i]
			add(`{"properties":{"STREET":[{"prefix":"`+p+`"}]}}`, func(f *feature) bool { return strings.HasPrefix(f.street, p) })
		case "suffix":
			p := suffixes[i]
			add(`{"properties":{"STREET":[{"suffix":"`+p+`"}]}}`, func(f *feature) bool { return strings.HasSuffix(f.street, p) })
		case "equals-ignore-case":
			s := streets[1+i]
			add(`{"properties":{"STREET":[{"equals-ignore-case":"`+strings.ToLower(s)+`"}]}}`, func(f *feature) bool { return f.street == s })
		case "prefix-ignore-case":
			p := prefixes[i]
			add(`{"properties":{"STREET":[{"prefix":{"equals-ignore-case":"`+strings.ToLower(p)+`"}}]}}`, func(f *feature) bool { return strings.HasPrefix(f.street, p) })
		case "numeric":
			lo := int64(-122_520_000 + i*16_000)
			hi := lo + 1_000
			add(fmt.Sprintf(`{"geometry":{"firstCoordinates":{"x":[{"numeric":[">=",%s,"<",%s]}]}}}`, micro(lo), micro(hi)),
				func(f *feature) bool { return f.x >= lo && f.x < hi })
		case "anything-but":
			s := streets[i]
			add(`{"properties":{"STREET":[{"anything-but":["`+s+`"]}],"ST_TYPE":["WAY"]}}`, func(f *feature) bool { return f.street != s && f.stType == "WAY" })
		case "wildcard":
			w := []string{"143*", "2*0*1*7", "*218", "3*5*2", "VA*IL", "1*9", "*77", "5*5*5", "60*", "*1*1*1"}[i]
			add(`{"properties":{"MAPBLKLOT":[{"wildcard":"`+w+`"}]}}`, func(f *feature) bool { return globMatch(w, f.mapblklot) })
		case "exists":
			// Alternate exists:true on an optional field and a value test.
			t := stTypes[i%7]
			add(`{"properties":{"OWNER":[{"exists":true}],"ST_TYPE":["`+t+`"]}}`, func(f *feature) bool { return f.owner && f.stType == t })
		case "complex-arrays":
			v := int64(-122_520_000 + i*16_000 + 500)
			add(fmt.Sprintf(`{"geometry":{"type":["Polygon"],"coordinates":[{"numeric":[">",%s,"<",%s]}]}}`, micro(v), micro(v+100)),
				func(f *feature) bool {
					if f.geomType != "Polygon" {
						return false
					}
					for _, x := range f.coordsX {
						if x > v && x < v+100 {
							return true
						}
					}
					return false
				})
		}
	}
	return fs
}

func micro(v int64) string {
	neg := v < 0
	if neg {
		v = -v
	}
	s := fmt.Sprintf("%d.%06d", v/1_000_000, v%1_000_000)
	if neg {
		return "-" + s
	}
	return s
}

// globMatch is an independent '*' matcher for the expected counts.
func globMatch(p, s string) bool {
	parts := strings.Split(p, "*")
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for i, mid := range parts[1:] {
		if i == len(parts)-2 {
			return strings.HasSuffix(s, mid)
		}
		k := strings.Index(s, mid)
		if k < 0 {
			return false
		}
		s = s[k+len(mid):]
	}
	return s == ""
}

var families = []string{"exact", "prefix", "suffix", "equals-ignore-case", "prefix-ignore-case", "numeric",
	"anything-but", "wildcard", "exists", "complex-arrays"}

var (
	corpusOnce  sync.Once
	bigCorpus   *corpus
	smallCorpus *corpus
)

func benchCorpora(b *testing.B) (*corpus, *corpus) {
	corpusOnce.Do(func() {
		n := 213_068
		if v, err := strconv.Atoi(os.Getenv("ESMD_FILTER_BENCH_LINES")); err == nil && v > 0 {
			n = v
		}
		start := time.Now()
		bigCorpus = genCorpus(n, true, 1)
		smallCorpus = genCorpus(n, false, 1)
		b.Logf("generated %d features in %v: %.0f bytes/line with coordinates, %.0f without",
			n, time.Since(start), float64(bigCorpus.bytes)/float64(n), float64(smallCorpus.bytes)/float64(n))
	})
	return bigCorpus, smallCorpus
}

func expectedCount(c *corpus, fs []benchFilter) int {
	n := 0
	for i := range c.feats {
		for _, f := range fs {
			if f.pred(&c.feats[i]) {
				n++
				break
			}
		}
	}
	return n
}

func runBench(b *testing.B, c *corpus, fs []benchFilter) {
	patterns := make([]string, len(fs))
	for i, f := range fs {
		patterns[i] = f.pattern
	}
	m, err := Compile(patterns, WithDialect(EventBridge), WithMaxFilters(0))
	if err != nil {
		b.Fatal(err)
	}
	want := expectedCount(c, fs)
	got := 0
	for _, line := range c.lines {
		ok, err := m.Match(SourceNone, line)
		if err != nil {
			b.Fatal(err)
		}
		if ok {
			got++
		}
	}
	if got != want {
		b.Fatalf("%d matches, want %d", got, want)
	}
	b.ReportAllocs()
	b.ResetTimer()
	n := len(c.lines)
	for i := 0; i < b.N; i++ {
		if _, err := m.Match(SourceNone, c.lines[i%n]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportPerEvent(b)
	b.ReportMetric(float64(want), "matches")
}

func reportPerEvent(b *testing.B) {
	sec := b.Elapsed().Seconds()
	if sec > 0 {
		b.ReportMetric(float64(b.N)/sec, "events/s")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/event")
	}
}

// BenchmarkCitylots matches 1, 5 and 10 filters of each operator family
// against the generated corpus, one event per iteration.
//
//	go test -run '^$' -bench Citylots -benchtime 2000000x ./filter/
func BenchmarkCitylots(b *testing.B) {
	big, small := benchCorpora(b)
	for _, corp := range []struct {
		name string
		c    *corpus
	}{{"full", big}, {"small", small}} {
		for _, fam := range families {
			if corp.name == "small" && fam == "complex-arrays" {
				continue
			}
			fs := family(fam)
			for _, n := range []int{1, 5, 10} {
				b.Run(fmt.Sprintf("%s/%s/filters=%d", corp.name, fam, n), func(b *testing.B) {
					runBench(b, corp.c, fs[:n])
				})
			}
		}
	}
}

// BenchmarkCitylotsBaseline does the same matching naively: encoding/json
// into map[string]any, then the conditions in Go. It is the reference for
// the ratios reported with BenchmarkCitylots.
func BenchmarkCitylotsBaseline(b *testing.B) {
	big, small := benchCorpora(b)
	for _, corp := range []struct {
		name string
		c    *corpus
	}{{"full", big}, {"small", small}} {
		for _, fam := range []string{"exact", "prefix", "numeric"} {
			fs := family(fam)
			b.Run(fmt.Sprintf("%s/%s/filters=10", corp.name, fam), func(b *testing.B) {
				b.ReportAllocs()
				n := len(corp.c.lines)
				matches := 0
				for i := 0; i < b.N; i++ {
					var doc map[string]any
					if err := json.Unmarshal(corp.c.lines[i%n], &doc); err != nil {
						b.Fatal(err)
					}
					f := featureFromMap(doc)
					for _, bf := range fs {
						if bf.pred(&f) {
							matches++
							break
						}
					}
				}
				b.StopTimer()
				reportPerEvent(b)
				_ = matches
			})
		}
	}
}

func featureFromMap(doc map[string]any) feature {
	var f feature
	props, _ := doc["properties"].(map[string]any)
	f.street, _ = props["STREET"].(string)
	f.mapblklot, _ = props["MAPBLKLOT"].(string)
	f.stType, _ = props["ST_TYPE"].(string)
	_, f.owner = props["OWNER"]
	geom, _ := doc["geometry"].(map[string]any)
	f.geomType, _ = geom["type"].(string)
	first, _ := geom["firstCoordinates"].(map[string]any)
	x, _ := first["x"].(float64)
	f.x = int64(math.Round(x * 1e6))
	return f
}

// BenchmarkSources matches typical Lambda records with source decoding.
func BenchmarkSources(b *testing.B) {
	cases := []struct {
		name    string
		src     Source
		pattern string
		record  string
	}{
		{"sqs-json-body", SourceSQS, `{"body":{"RequestCode":["BBBB"]}}`, sqsRecord(`{"RecordNumber":1234,"TimeStamp":"yyyy-mm-ddThh:mm:ss","RequestCode":"AAAA"}`)},
		{"sqs-metadata", SourceSQS, `{"attributes":{"ApproximateReceiveCount":["2"]}}`, sqsRecord(`{"a":1}`)},
		{"kinesis-data", SourceKinesis, `{"data":{"event_type":["function_2"]}}`, kinesisRecord(b64(`{"event_type":"function_1","message":"foo"}`))},
		{"dynamodb", SourceDynamoDB, `{"dynamodb":{"NewImage":{"k":{"S":["w"]}}}}`, ddbRecord},
		{"kafka-value", SourceKafka, `{"value":{"device_ID":[{"prefix":"XY"}]}}`, kafkaRecord(b64(`{"device_ID":"AB1234","session":{"state":"IN_PROGRESS"}}`))},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			m, err := Compile([]string{c.pattern})
			if err != nil {
				b.Fatal(err)
			}
			rec := []byte(c.record)
			b.ReportAllocs()
			b.SetBytes(int64(len(rec)))
			for i := 0; i < b.N; i++ {
				if ok, err := m.Match(c.src, rec); err != nil || ok {
					b.Fatal("unexpected match", err)
				}
			}
			reportPerEvent(b)
		})
	}
}
