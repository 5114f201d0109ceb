package emulator_test

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/emulator"
)

const millionFleet = "../testdata/fleets/million.yaml"

// rssBytes reads the process's resident set from /proc (0 where there is none).
func rssBytes(field string) float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, field+":") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb * 1024
		}
	}
	return 0
}

var (
	millionOnce sync.Once
	million     *emulator.Server
)

// millionHub starts one emulator with a million devices for all the benchmarks that need it.
func millionHub(b *testing.B) *emulator.Server {
	millionOnce.Do(func() {
		f, err := emulator.LoadFleet(millionFleet)
		if err != nil {
			b.Fatal(err)
		}
		million, err = emulator.Start(b.Context(), emulator.Options{Fleet: f})
		if err != nil {
			b.Fatal(err)
		}
	})
	return million
}

// BenchmarkLoadMillion measures starting an emulator with a million devices and its memory.
func BenchmarkLoadMillion(b *testing.B) {
	f, err := emulator.LoadFleet(millionFleet)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		s, err := emulator.Start(b.Context(), emulator.Options{Fleet: f})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		runtime.GC()
		b.ReportMetric(rssBytes("VmRSS")/(1<<20), "RSS-MiB")
		b.ReportMetric(rssBytes("VmHWM")/(1<<20), "peakRSS-MiB")
		if st := s.Stats(); st.Devices != 1_000_000 {
			b.Fatalf("%d devices", st.Devices)
		}
		s.Close()
		b.StartTimer()
	}
}

// BenchmarkCountMillion measures a tag-equality COUNT over a million twins, over HTTP.
func BenchmarkCountMillion(b *testing.B) {
	s := millionHub(b)
	for b.Loop() {
		resp, body := do(b, s, "POST", "/devices/query", `{"query":"SELECT COUNT() AS n FROM devices WHERE tags.region = 'r3'"}`)
		if resp.StatusCode != 200 || string(body) != `[{"n":100000}]` {
			b.Fatalf("%d %s", resp.StatusCode, body)
		}
	}
}

// BenchmarkPageMillion measures paging through a million-twin SELECT * result, over HTTP.
func BenchmarkPageMillion(b *testing.B) {
	s := millionHub(b)
	for b.Loop() {
		start := time.Now()
		items, _, pages := queryAllRaw(b, s, "SELECT * FROM devices")
		if items != 1_000_000 || pages != 10_000 {
			b.Fatalf("%d twins in %d pages", items, pages)
		}
		b.ReportMetric(float64(items)/time.Since(start).Seconds(), "twins/s")
	}
}

// queryAllRaw counts items and pages without decoding twins, so the client's cost stays small.
func queryAllRaw(tb testing.TB, s *emulator.Server, q string) (int, string, int) {
	body, _ := json.Marshal(map[string]string{"query": q})
	token, typ, items, pages := "", "", 0, 0
	for {
		hdr := []string{"x-ms-max-item-count", "100"}
		if token != "" {
			hdr = append(hdr, "x-ms-continuation", token)
		}
		resp, b := do(tb, s, "POST", "/devices/query", string(body), hdr...)
		if resp.StatusCode != 200 {
			tb.Fatalf("%d %s", resp.StatusCode, b)
		}
		items += strings.Count(string(b), `{"deviceId":`)
		pages++
		typ = resp.Header.Get("x-ms-item-type")
		token = resp.Header.Get("x-ms-continuation")
		if token == "" {
			return items, typ, pages
		}
	}
}

// BenchmarkTwinJobMillion measures a twin-update job over a million devices on the unlimited tier, from
// creation to completed.
func BenchmarkTwinJobMillion(b *testing.B) {
	s := millionHub(b)
	n := 0
	for b.Loop() {
		n++
		id := fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), n)
		createJob(b, s, `{"jobId":"`+id+`","type":"scheduleUpdateTwin","queryCondition":"*","updateTwin":{"etag":"*","tags":{"fwChannel":"stable-`+strconv.Itoa(n)+`"},"properties":{"desired":{"firmware":{"version":"2.4.`+strconv.Itoa(n)+`"}}}}}`)
		jr := waitJob(b, s, id, 120*time.Second)
		if jr.DeviceJobStatistics.SucceededCount != 1_000_000 {
			b.Fatalf("%+v", jr.DeviceJobStatistics)
		}
		b.ReportMetric(rssBytes("VmRSS")/(1<<20), "RSS-MiB")
	}
}

// BenchmarkDataFileMillion measures writing and reloading the data file of a million devices.
func BenchmarkDataFileMillion(b *testing.B) {
	f, err := emulator.LoadFleet(millionFleet)
	if err != nil {
		b.Fatal(err)
	}
	data := b.TempDir() + "/hub.jsonl"
	for b.Loop() {
		s, err := emulator.Start(b.Context(), emulator.Options{Fleet: f, DataFile: data})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		s, err = emulator.Start(b.Context(), emulator.Options{Fleet: f, DataFile: data})
		if err != nil {
			b.Fatal(err)
		}
		if st := s.Stats(); st.Devices != 1_000_000 {
			b.Fatalf("%d devices after reload", st.Devices)
		}
		b.StopTimer()
		runtime.GC()
		b.ReportMetric(rssBytes("VmRSS")/(1<<20), "RSS-MiB")
		s.Close()
		os.Remove(data)
		b.StartTimer()
	}
}

// BenchmarkMethodJobMillion measures a direct-method job over a million devices on the unlimited tier
// (devices answer at once), from creation to completed.
func BenchmarkMethodJobMillion(b *testing.B) {
	s := millionHub(b)
	n := 0
	for b.Loop() {
		n++
		id := fmt.Sprintf("bench-m-%d-%d", time.Now().UnixNano(), n)
		createJob(b, s, `{"jobId":"`+id+`","type":"scheduleDeviceMethod","queryCondition":"*","cloudToDeviceMethod":{"methodName":"install","payload":{"v":1}}}`)
		jr := waitJob(b, s, id, 300*time.Second)
		if st := jr.DeviceJobStatistics; st.SucceededCount+st.FailedCount != 1_000_000 {
			b.Fatalf("%+v", st)
		}
	}
}
