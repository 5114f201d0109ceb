package report

import (
	"bytes"
	"encoding/xml"
	"strings"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/engine"
)

func TestFormatOf(t *testing.T) {
	for _, tc := range []struct {
		path string
		want Format
		err  bool
	}{
		{"r.json", JSON, false}, {"dir/r.XML", JUnit, false}, {"r.html", HTML, false}, {"r.htm", HTML, false},
		{"r.txt", "", true}, {"report", "", true},
	} {
		got, err := FormatOf(tc.path)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("FormatOf(%q) = %q, %v; want %q, error %v", tc.path, got, err, tc.want, tc.err)
		}
	}
}

// sample is a direct-method rollout with a device of every outcome in one wave, and a wave not
// started.
func sample() *engine.Report {
	t0 := time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)
	return &engine.Report{Rollout: "fw", Status: engine.StatusHalted, Reason: "wave eu: after batch 1: 3 failed",
		Created: t0, Updated: t0.Add(time.Minute), Time: t0.Add(2 * time.Minute),
		Waves: []engine.Wave{
			{Name: "eu", Status: engine.StatusFailed, Started: t0, DeviceCount: 6, Counts: engine.Counts{Targeted: 6, Succeeded: 1}},
			{Name: "us", Status: engine.StatusPending, Gated: true},
		},
		Devices: []engine.ReportRow{
			{Device: "ok-1", Wave: "eu", Outcome: engine.Succeeded},
			{Device: "fail-1", Wave: "eu", Outcome: engine.Failed, ErrorCode: "JobRunPreconditionFailed"},
			{Device: "meth-1", Wave: "eu", Outcome: engine.MethodError, MethodStatus: 500},
			{Device: "time-1", Wave: "eu", Outcome: engine.TimedOut},
			{Device: "off-1", Wave: "eu", Batch: 1, Outcome: engine.Unreachable, ErrorCode: "DeviceNotOnline", Attempt: 2},
			{Device: "wait-1", Wave: "eu", Batch: 1, Outcome: engine.Pending},
		},
	}
}

func TestJUnit(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteJUnit(&buf, sample()); err != nil {
		t.Fatal(err)
	}
	var doc junitSuites
	if err := xml.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	if doc.Tests != 6 || doc.Failures != 4 || doc.Skipped != 1 || len(doc.Suites) != 2 || doc.Time != "60.000" {
		t.Errorf("totals: %d tests, %d failures, %d skipped, %d suites, time %s", doc.Tests, doc.Failures, doc.Skipped, len(doc.Suites), doc.Time)
	}
	want := map[string]string{
		"fail-1": "failed: the job failed on the device (error code JobRunPreconditionFailed)",
		"meth-1": "methodError: the direct method answered status 500",
		"time-1": "timedOut: not reached before the job ended",
		"off-1":  "unreachable: the device was not online (error code DeviceNotOnline)",
	}
	for _, c := range doc.Suites[0].Cases {
		got := ""
		if c.Failure != nil {
			got = c.Failure.Type + ": " + c.Failure.Message
		}
		if got != want[c.Name] {
			t.Errorf("%s: failure %q, want %q", c.Name, got, want[c.Name])
		}
		if (c.Skipped != nil) != (c.Name == "wait-1") {
			t.Errorf("%s: skipped %v", c.Name, c.Skipped)
		}
		if retried := strings.Contains(c.SystemOut, "from retry 2"); retried != (c.Name == "off-1") {
			t.Errorf("%s: system-out %q (its outcome from a retry: %v)", c.Name, c.SystemOut, c.Name == "off-1")
		}
	}
	if s := doc.Suites[1]; s.Name != "fw/us" || s.Tests != 0 || len(s.Cases) != 0 {
		t.Errorf("a wave not started: %+v", s)
	}
}

func TestHTML(t *testing.T) {
	rep := sample()
	rep.Devices[0].Device = `<script>alert("x")</script>`
	var buf bytes.Buffer
	if err := WriteHTML(&buf, rep); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	for _, want := range []string{`id="timeline"`, `data-wave="eu"`, "gate failed: after batch 1: 3 failed", "not started; needs approval",
		"Content-Security-Policy", `class="methodError"`} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, `<script>alert`) {
		t.Error("a device id is not escaped")
	}
}

// TestHTMLHubs: a report of a plan with hubs has a row per hub; one without hubs has no hub table.
func TestHTMLHubs(t *testing.T) {
	rep := sample()
	var buf bytes.Buffer
	if err := WriteHTML(&buf, rep); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), `id="hubs"`) {
		t.Error("a report without hubs has a hub table")
	}
	rep.Hubs = []engine.HubSummary{{Hub: "eu", Devices: 4, Succeeded: 3, Failed: 1}, {Hub: "us", Devices: 2, Succeeded: 2}}
	buf.Reset()
	if err := WriteHTML(&buf, rep); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`id="hubs"`, "<tr><td>eu</td><td>4</td><td>3</td><td>1</td><td>0</td><td>0</td></tr>", "<td>us</td><td>2</td>"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("page lacks %q", want)
		}
	}
}
