package query

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// benchCondition is the acceptance condition: evaluating it over 1,000,000 twins must take at most 1 s.
const benchCondition = "tags.region = 'eu' AND properties.reported.firmware.version < '2.4.0'"

var regions = []string{"eu", "us", "asia", "eu-north"}

// benchTwin builds a twin shaped as the hub returns it (as decoded by encoding/json), with its own maps.
func benchTwin(i int) Map {
	return Map{
		"deviceId":        fmt.Sprintf("device-%06d", i),
		"etag":            "AAAAAAAAAAE=",
		"version":         float64(4),
		"status":          "enabled",
		"connectionState": "Connected",
		"tags": map[string]any{
			"region": regions[i%len(regions)],
			"ring":   float64(i % 5),
			"site":   fmt.Sprintf("site-%d", i%100),
		},
		"properties": map[string]any{
			"desired": map[string]any{
				"firmware": map[string]any{"version": "2.4.0"},
				"$version": float64(3),
			},
			"reported": map[string]any{
				"firmware": map[string]any{"version": fmt.Sprintf("2.%d.%d", i%6, i%10)},
				"battery":  float64(i % 100),
				"$version": float64(7),
			},
		},
	}
}

var (
	fleetOnce sync.Once
	fleet     []Object
)

// benchFleet is 1,000,000 distinct twins, built once per test binary (about 2 GB).
func benchFleet() []Object {
	fleetOnce.Do(func() {
		fleet = make([]Object, 1_000_000)
		for i := range fleet {
			fleet[i] = benchTwin(i)
		}
		runtime.GC() // finish collecting the build's garbage before anything is timed
	})
	return fleet
}

// BenchmarkMatch1M evaluates the acceptance condition over one million twins per iteration.
func BenchmarkMatch1M(b *testing.B) {
	twins := benchFleet()
	m := Compile(mustParse(b, benchCondition))
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for b.Loop() {
		n = 0
		for _, tw := range twins {
			if m.Match(tw) {
				n++
			}
		}
	}
	if n == 0 || n == len(twins) {
		b.Fatalf("%d of %d twins matched: the fixture does not exercise the condition", n, len(twins))
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(twins)), "ns/twin")
}

// BenchmarkMatchIn500 evaluates a 500-id deviceId batch condition against one twin.
func BenchmarkMatchIn500(b *testing.B) {
	m := Compile(In("deviceId", ids(500)))
	tw := benchTwin(499)
	b.ReportAllocs()
	for b.Loop() {
		m.Match(tw)
	}
}

func ids(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("device-%06d", i*2)
	}
	return out
}

// inCondition8K is `deviceId IN [...]` with as many ids as fit in 8192 bytes.
func inCondition8K(tb testing.TB) string {
	var b strings.Builder
	b.WriteString("deviceId IN [")
	for i := 0; ; i++ {
		id := Quote(fmt.Sprintf("device-%06d", i))
		if b.Len()+len(id)+3 > MaxLength {
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(id)
	}
	b.WriteString("]")
	if b.Len() > MaxLength || b.Len() < MaxLength-32 {
		tb.Fatalf("condition is %d bytes", b.Len())
	}
	return b.String()
}

// BenchmarkParseIn8K parses an 8 KB deviceId IN [...] condition; the target is at most 1 ms.
func BenchmarkParseIn8K(b *testing.B) {
	src := inCondition8K(b)
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseCondition(src); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFormatIn8K prints the same condition.
func BenchmarkFormatIn8K(b *testing.B) {
	e := mustParse(b, inCondition8K(b))
	b.ReportAllocs()
	for b.Loop() {
		Format(e)
	}
}

// BenchmarkParseMegabyte parses a 1 MB condition of chained comparisons: parsing stays linear.
func BenchmarkParseMegabyte(b *testing.B) {
	src := "a = 1" + strings.Repeat(" OR tags.x = 'abcdefgh'", 1<<20/24)
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		if _, err := ParseCondition(src); err != nil {
			b.Fatal(err)
		}
	}
}

// TestParseBudget is a coarse guard on the acceptance figures that runs with the ordinary tests: the
// benchmarks above give the real numbers.
func TestParseBudget(t *testing.T) {
	src := inCondition8K(t)
	res := testing.Benchmark(func(b *testing.B) {
		for b.Loop() {
			if _, err := ParseCondition(src); err != nil {
				b.Fatal(err)
			}
		}
	})
	if per := res.NsPerOp(); per > 5_000_000 {
		t.Errorf("parsing an 8 KB IN condition took %d ns, budget 1 ms (5 ms allowed on a busy machine)", per)
	}
}
