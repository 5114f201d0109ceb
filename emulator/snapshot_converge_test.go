package emulator_test

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/emulator"
)

// convergeFleet has two reporting devices (a-0000, a-0001), one offline device and one that never
// converges, all with the given converge delay.
func convergeFleet(tb testing.TB, delay time.Duration) *emulator.Fleet {
	tb.Helper()
	f, err := emulator.ParseFleet("converge.yaml", []byte(`
defaults:
  behavior:
    converge: {delay: `+delay.String()+`}
groups:
  - {name: a, count: 2, idPrefix: a-}
  - {name: off, count: 1, idPrefix: off-, behavior: {offline: 100%}}
  - {name: stuck, count: 1, idPrefix: stuck-, behavior: {converge: {failure: 100%}}}
`))
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

func startData(tb testing.TB, fleet *emulator.Fleet, data string) *emulator.Server {
	tb.Helper()
	s, err := emulator.Start(tb.Context(), emulator.Options{Fleet: fleet, DataFile: data})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("close: %v", err)
		}
	})
	return s
}

// reportedFW is the firmware a device has reported and when it reported it (zero when it has not).
func reportedFW(tb testing.TB, s *emulator.Server, id string) (any, time.Time) {
	tb.Helper()
	resp, body := do(tb, s, "GET", "/twins/"+id, "")
	if resp.StatusCode != 200 {
		tb.Fatalf("GET twin %s: %d %s", id, resp.StatusCode, body)
	}
	tw := decodeTwin(tb, body)
	var at time.Time
	if s, ok := path(tw, "properties", "reported", "$metadata", "fw", "$lastUpdated").(string); ok {
		at, _ = time.Parse(time.RFC3339Nano, s)
	}
	return path(tw, "properties", "reported", "fw"), at
}

// TestDataFileKeepsPendingReports stops a hub while simulated devices still owe their reports and
// starts it again from its data file: the reports must still come, at their due time or at once when
// that has passed, with the newest desired values, and never from devices that would not have reported.
func TestDataFileKeepsPendingReports(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		delay    time.Duration
		down     time.Duration // how long the hub stays stopped
		stripDue bool          // restart from a data file as written before pending reports were kept
	}{
		{name: "due after restart", delay: time.Second},
		{name: "due while stopped", delay: 200 * time.Millisecond, down: 400 * time.Millisecond},
		{name: "data file without pending reports", delay: 200 * time.Millisecond, stripDue: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data := filepath.Join(t.TempDir(), "hub.jsonl")
			fleet := convergeFleet(t, tt.delay)
			s, err := emulator.Start(t.Context(), emulator.Options{Fleet: fleet, DataFile: data})
			if err != nil {
				t.Fatal(err)
			}
			patched := time.Now()
			// a-0001's first report is superseded before it is due: only 2.0 may ever be reported.
			for _, p := range []struct{ id, fw string }{{"a-0001", "1.5"}, {"a-0000", "2.0"}, {"a-0001", "2.0"}, {"off-0000", "2.0"}, {"stuck-0000", "2.0"}} {
				if resp, body := do(t, s, "PATCH", "/twins/"+p.id, `{"properties":{"desired":{"fw":"`+p.fw+`"}}}`); resp.StatusCode != 200 {
					t.Fatalf("PATCH %s: %d %s", p.id, resp.StatusCode, body)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if stopped := time.Since(patched); stopped >= tt.delay {
				t.Skipf("the machine took %v to patch and stop, longer than the %v delay", stopped, tt.delay)
			}
			if tt.stripDue {
				raw, err := os.ReadFile(data)
				if err != nil {
					t.Fatal(err)
				}
				due := regexp.MustCompile(`,"convergeDue":\d+`)
				if n := len(due.FindAll(raw, -1)); n != 2 {
					t.Fatalf("data file keeps %d pending reports, want 2:\n%s", n, raw)
				}
				if err := os.WriteFile(data, due.ReplaceAll(raw, nil), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(tt.down)

			s2 := startData(t, fleet, data)
			if tt.stripDue {
				time.Sleep(2 * tt.delay)
				for _, id := range []string{"a-0000", "a-0001"} {
					if fw, _ := reportedFW(t, s2, id); fw != nil {
						t.Errorf("%s reported %v from a data file with no pending report", id, fw)
					}
				}
				if n := s2.Stats().Pending; n != 0 {
					t.Errorf("%d reports pending, want none", n)
				}
				return
			}
			// Read first, then ask whether the reads were early: the reports fall due no sooner than
			// patched+delay, so reads that ended before it must still see them pending, however long
			// a loaded machine stalled between them.
			pending := s2.Stats().Pending
			fw0, _ := reportedFW(t, s2, "a-0000")
			if early := time.Since(patched) < tt.delay; early {
				if pending != 2 {
					t.Errorf("%d reports pending after restart, want 2", pending)
				}
				if fw0 != nil {
					t.Errorf("a-0000 reported %v before its converge delay", fw0)
				}
			}
			restarted := time.Now()
			deadline := restarted.Add(tt.delay + 3*time.Second)
			for _, id := range []string{"a-0000", "a-0001"} {
				for {
					fw, at := reportedFW(t, s2, id)
					if fw == "2.0" {
						if at.Before(patched.Add(tt.delay).Truncate(time.Millisecond)) {
							t.Errorf("%s reported at %v, before its due time %v", id, at, patched.Add(tt.delay))
						}
						break
					}
					if fw != nil {
						t.Fatalf("%s reported %v, want 2.0", id, fw)
					}
					if time.Now().After(deadline) {
						t.Fatalf("%s never reported after the restart", id)
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			if tt.down > 0 {
				// Generous for a loaded machine: what it guards against is reports waiting for a
				// second full delay or a later event, not milliseconds.
				if took := time.Since(restarted); took > 3*time.Second {
					t.Errorf("reports already due took %v to arrive after the restart", took)
				}
			}
			for _, id := range []string{"off-0000", "stuck-0000"} {
				if fw, _ := reportedFW(t, s2, id); fw != nil {
					t.Errorf("%s reported %v; it never converges", id, fw)
				}
			}
			if ds, _ := s2.DeviceStats("a-0001"); ds.Reports != 1 {
				t.Errorf("a-0001 reported %d times, want once", ds.Reports)
			}
		})
	}
}
