package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/emulator/emulatortest"
	"github.com/iot-rollout/rollout/statestore/azblob/azuritetest"

	"github.com/iot-rollout/rollout/statestore/bolt"

	"github.com/iot-rollout/rollout/emulator"
	"github.com/iot-rollout/rollout/engine"
	"github.com/iot-rollout/rollout/engine/enginetest"
	"github.com/iot-rollout/rollout/hubapi"
)

// The benchmarks run the emulator in a child process (this test binary, re-executed), so that the
// engine's time and memory are measured apart from the hub's.

func TestMain(m *testing.M) {
	emulatortest.ServeChildIfAsked()
	code := m.Run()
	azuritetest.Stop()
	os.Exit(code)
}

type childHub struct {
	url    string
	client *hubapi.Client
	quotas hubapi.Quotas
}

// startChild starts an emulator process with groups of devices (tags.ring = r0, r1, ...).
func startChild(b *testing.B, tier string, units int, groups ...int) *childHub {
	b.Helper()
	var fleet strings.Builder
	fleet.WriteString("groups:\n")
	for i, n := range groups {
		fmt.Fprintf(&fleet, "  - {name: r%d, count: %d, idPrefix: r%d-, tags: {ring: r%d}, behavior: {converge: {failure: 100%%}}}\n",
			i, n, i, i)
	}
	file := filepath.Join(b.TempDir(), "fleet.yaml")
	if err := os.WriteFile(file, []byte(fleet.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	child := emulatortest.StartChild(b, file, tier, units)
	url, cs := child.URL, child.ConnectionString
	q, err := hubapi.TierQuotas(tier, units)
	if err != nil {
		b.Fatal(err)
	}
	c, err := hubapi.NewFromConnectionString(cs, hubapi.Options{PlainHTTP: true, Quotas: &q})
	if err != nil {
		b.Fatal(err)
	}
	return &childHub{url: url, client: c, quotas: q}
}

func (h *childHub) stats(b *testing.B) emulator.Stats {
	resp, err := http.Get(h.url + "/_emulator/stats")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var s emulator.Stats
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		b.Fatal(err)
	}
	return s
}

func fourWavePlan(name string, size int, growth float64) string {
	return fmt.Sprintf(`
version: 1
name: %s
action:
  twinUpdate: {desired: {firmware: {version: "2.0"}}}
defaults:
  timeout: 30m
  batch: {size: %d, growth: %g}
  success: {minSuccessRate: 100%%}
  bake: 0s
waves:
  - {name: w0, target: "tags.ring = 'r0'"}
  - {name: w1, target: "tags.ring = 'r1'"}
  - {name: w2, target: "tags.ring = 'r2'"}
  - {name: w3, target: "*"}
`, name, size, growth)
}

// heapPeak samples the heap while f runs and returns the peak growth over the heap before it.
func heapPeak(f func()) uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base, peak := ms.HeapAlloc, ms.HeapAlloc
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapAlloc)
			}
		}
	}()
	f()
	close(done)
	wg.Wait()
	return peak - base
}

func benchApply(b *testing.B, h *childHub, planYAML string, devices int) (time.Duration, uint64) {
	p := enginetest.Plan(b, planYAML)
	store, err := engine.OpenStore(context.Background(), bolt.New(b.TempDir()), p.Name)
	if err != nil {
		b.Fatal(err)
	}
	var res *engine.Result
	start := time.Now()
	grow := heapPeak(func() {
		res, err = engine.Apply(context.Background(), p, engine.Options{Hub: h.client, Store: store, Quotas: h.quotas})
	})
	elapsed := time.Since(start)
	if err != nil {
		b.Fatal(err)
	}
	if res.Status != engine.StatusDone {
		b.Fatalf("status %s: %s", res.Status, res.Reason)
	}
	st, _ := store.Load()
	n := 0
	for _, w := range st.Waves {
		n += w.Counts.Succeeded
	}
	if n != devices {
		b.Fatalf("%d devices succeeded, want %d", n, devices)
	}
	return elapsed, grow
}

// s3Waves are the wave sizes of the S3 benchmarks: a staged rollout's waves grow.
var s3Waves = []int{500, 1500, 3000, 5000}

// BenchmarkS3TenUnits: a 4-wave, 10,000-device twin rollout on S3 with 10 units (500 job device
// operations per second: the hub's floor is 20 s). x-floor is the time over that floor.
func BenchmarkS3TenUnits(b *testing.B) {
	for range b.N {
		h := startChild(b, "S3", 10, s3Waves...)
		elapsed, _ := benchApply(b, h, fourWavePlan("s3", 500, 2), 10000)
		b.ReportMetric(elapsed.Seconds()/20, "x-floor")
		b.ReportMetric(busyShare(b, h.stats(b).Jobs)*100, "busy-%")
		b.ReportMetric(elapsed.Seconds(), "s")
	}
}

// BenchmarkS3SamplePattern is what users write today after the IoT Hub job samples: per wave, schedule
// one job and poll it every 5 s, then the next; no snapshot, gate or outcome collection.
func BenchmarkS3SamplePattern(b *testing.B) {
	for range b.N {
		h := startChild(b, "S3", 10, s3Waves...)
		ctx := context.Background()
		start := time.Now()
		for w := range 4 {
			now := hubapi.NewTime(time.Now())
			req := &hubapi.JobRequest{JobID: fmt.Sprintf("sample-%d", w), Type: hubapi.JobTypeUpdateTwin,
				QueryCondition: fmt.Sprintf("tags.ring = 'r%d'", w), StartTime: &now, MaxExecutionTimeInSeconds: 1800,
				UpdateTwin: &hubapi.Twin{ETag: "*", Properties: &hubapi.TwinProperties{Desired: map[string]any{"firmware": map[string]any{"version": "2.0"}}}}}
			if _, err := h.client.CreateJob(ctx, req); err != nil {
				b.Fatal(err)
			}
			for {
				time.Sleep(5 * time.Second)
				j, err := h.client.GetJob(ctx, req.JobID)
				if err != nil {
					b.Fatal(err)
				}
				if j.Terminal() {
					break
				}
			}
		}
		b.ReportMetric(time.Since(start).Seconds(), "s")
	}
}

// BenchmarkS1Busy: on S1 (10 job device operations per second, 1 concurrent job) a 4-wave rollout of
// 600 devices, 150 a wave in one batch each. busy-% is the share of the time from the first job's
// start to the last job's end in which a job ran; throttled counts the hub's 429s.
func BenchmarkS1Busy(b *testing.B) {
	for range b.N {
		h := startChild(b, "S1", 1, 150, 150, 150, 150)
		benchApply(b, h, fourWavePlan("s1", 150, 1), 600)
		s := h.stats(b)
		b.ReportMetric(busyShare(b, s.Jobs)*100, "busy-%")
		var throttled int64
		for _, q := range s.Quotas {
			throttled += q.Throttled
		}
		b.ReportMetric(float64(throttled), "throttled")
	}
}

// BenchmarkS1ThreeWaves: on S1 a 3-wave twin rollout of 1,500 devices (500 a wave) whose batches
// are 100, 200 and 200 devices: the first batch of each wave is small, so the hub idles unless the
// next batch is ready when one ends. busy-% and throttled as in BenchmarkS1Busy; the floor is 150 s.
func BenchmarkS1ThreeWaves(b *testing.B) {
	const planYAML = `
version: 1
name: s1-three
action:
  twinUpdate: {desired: {firmware: {version: "2.0"}}}
defaults:
  batch: {size: 100, growth: 2}
  success: {minSuccessRate: 100%}
waves:
  - {name: w0, target: "tags.ring = 'r0'"}
  - {name: w1, target: "tags.ring = 'r1'"}
  - {name: w2, target: "*"}
`
	for range b.N {
		h := startChild(b, "S1", 1, 500, 500, 500)
		elapsed, _ := benchApply(b, h, planYAML, 1500)
		s := h.stats(b)
		if os.Getenv("ROLLOUT_BENCH_TIMELINE") != "" {
			for _, e := range s.Jobs {
				b.Logf("%s %-40s %s", e.Time.Format("15:04:05.000"), e.JobID, e.Status)
			}
		}
		b.ReportMetric(busyShare(b, s.Jobs)*100, "busy-%")
		var throttled int64
		for _, q := range s.Quotas {
			throttled += q.Throttled
		}
		b.ReportMetric(float64(throttled), "throttled")
		b.ReportMetric(elapsed.Seconds(), "s")
	}
}

// busyShare is the share of time between the first job start and the last job end during which some
// job ran, from the emulator's job timeline.
func busyShare(b *testing.B, events []emulator.JobEvent) float64 {
	sort.Slice(events, func(i, j int) bool { return events[i].Time.Before(events[j].Time) })
	running := map[string]bool{}
	var first, last, busySince time.Time
	var busy time.Duration
	for _, e := range events {
		was := len(running) > 0
		switch e.Status {
		case hubapi.JobRunning:
			running[e.JobID] = true
			if first.IsZero() {
				first = e.Time
			}
		case hubapi.JobCompleted, hubapi.JobFailed, hubapi.JobCancelled:
			delete(running, e.JobID)
			last = e.Time
		}
		switch now := len(running) > 0; {
		case !was && now:
			busySince = e.Time
		case was && !now:
			busy += e.Time.Sub(busySince)
		}
	}
	if !last.After(first) {
		b.Fatalf("no job ran: %v", events)
	}
	return busy.Seconds() / last.Sub(first).Seconds()
}

// BenchmarkUnlimited100k: a 4-wave, 100,000-device twin rollout on the unlimited tier, end to end
// (resolution, snapshots, jobs, outcomes). B/device is the engine's peak heap growth per device.
func BenchmarkUnlimited100k(b *testing.B) {
	for range b.N {
		h := startChild(b, "unlimited", 1, 25000, 25000, 25000, 25000)
		elapsed, grow := benchApply(b, h, fourWavePlan("raw", 5000, 2), 100000)
		b.ReportMetric(100000/elapsed.Seconds(), "devices/s")
		b.ReportMetric(float64(grow)/100000, "B/device")
	}
}

// BenchmarkUnlimitedMillion: a 3-wave, 1,000,000-device twin rollout on the unlimited tier, end to end,
// with local state. Besides devices/s it reports the engine's peak heap growth and the whole
// process's peak RSS, and the state file's size, per device.
func BenchmarkUnlimitedMillion(b *testing.B) {
	const devices = 1_000_000
	for range b.N {
		h := startChild(b, "unlimited", 1, 10_000, 490_000, 500_000)
		p := enginetest.Plan(b, fmt.Sprintf(`
version: 1
name: million
action:
  twinUpdate: {desired: {firmware: {version: "2.0"}}}
defaults:
  timeout: 30m
  batch: {size: 10000, growth: 2}
  success: {minSuccessRate: 100%%}
waves:
  - {name: canary, target: "tags.ring = 'r0'"}
  - {name: half, target: "tags.ring = 'r1'"}
  - {name: rest, target: "*"}
`))
		dir := b.TempDir()
		store, err := engine.OpenStore(context.Background(), bolt.New(dir), p.Name)
		if err != nil {
			b.Fatal(err)
		}
		var res *engine.Result
		start := time.Now()
		var events []engine.Event
		obs := engine.ObserverFunc(func(e engine.Event) {
			if e.Type != engine.EventBatchProgress {
				events = append(events, e)
			}
		})
		grow := heapPeak(func() {
			res, err = engine.Apply(context.Background(), p, engine.Options{Hub: h.client, Store: store, Quotas: h.quotas, Observer: obs})
		})
		elapsed := time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if res.Status != engine.StatusDone {
			b.Fatalf("status %s: %s", res.Status, res.Reason)
		}
		if path := os.Getenv("ROLLOUT_BENCH_TIMELINE"); path != "" {
			// The events but job creations, one a line with its time since the start: where the time goes.
			var tl strings.Builder
			for _, e := range events {
				if e.Type != engine.EventJobCreated {
					fmt.Fprintf(&tl, "%7.2fs %s %s b%d %d\n", e.Time.Sub(start).Seconds(), e.Type, e.WaveName, e.Batch, e.Devices)
				}
			}
			_ = os.WriteFile(path, []byte(tl.String()), 0o644)
		}
		fi, err := os.Stat(filepath.Join(dir, p.Name+".db"))
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(devices/elapsed.Seconds(), "devices/s")
		b.ReportMetric(float64(grow)/devices, "B/device")
		b.ReportMetric(float64(fi.Size())/devices, "state-B/device")
		b.ReportMetric(float64(maxRSS())/(1<<20), "peak-RSS-MiB")
	}
}
