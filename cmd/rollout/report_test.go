package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestDemo runs the demo (a canary, a passing wave, a wave whose verify fails, the rollback) with a
// webhook that fails each notification's first delivery: it gets gateFailed and rolledBack, and its
// URL is never printed. Then the demo's reports are written after the fact with `rollout report`: the
// JUnit file has a suite per wave and the devices that failed verify as failures, and the HTML page
// loads in a real headless browser without a console error and shows the timeline.
func TestDemo(t *testing.T) {
	hook := &webhook{}
	srv := httptest.NewServer(hook)
	defer srv.Close()
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	code, stdout, stderr := runCLI(t, "apply", "--emulate", "../../testdata/fleets/demo.yaml", "--state", state,
		"--report", filepath.Join(dir, "apply.xml"), "--notify", srv.URL+"/hooks/s3cr3t-token", "../../plans/demo/demo.yaml")
	if code != exitRolledBack {
		t.Fatalf("demo: exit %d, want %d; stderr:\n%s", code, exitRolledBack, stderr)
	}
	hook.mu.Lock()
	events := hook.events
	hook.mu.Unlock()
	if want := []string{"gateFailed", "rolledBack"}; !slices.Equal(events, want) {
		t.Errorf("the webhook got %v, want %v", events, want)
	}
	if strings.Contains(stdout+stderr, "s3cr3t") {
		t.Error("the webhook URL was printed")
	}
	for _, out := range []string{"demo.xml", "demo.html", "demo.json"} {
		if code, _, stderr := runCLI(t, "report", "--state", state, "demo-thermostat-fw", "--out", filepath.Join(dir, out)); code != exitOK {
			t.Fatalf("report --out %s: exit %d: %s", out, code, stderr)
		}
	}
	for _, f := range []string{"apply.xml", "demo.xml"} {
		t.Run(f, func(t *testing.T) { checkDemoJUnit(t, filepath.Join(dir, f)) })
	}
	t.Run("html", func(t *testing.T) { checkDemoHTML(t, filepath.Join(dir, "demo.html")) })
}

// webhook records the events posted to it, failing the first attempt of each with 500.
type webhook struct {
	mu     sync.Mutex
	tries  int
	events []string
}

func (h *webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.tries++; h.tries%2 == 1 {
		http.Error(w, "try again", http.StatusInternalServerError)
		return
	}
	var m struct{ Event, Rollout string }
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil || m.Rollout != "demo-thermostat-fw" {
		http.Error(w, "bad message", http.StatusBadRequest)
		return
	}
	h.events = append(h.events, m.Event)
}

func checkDemoJUnit(t *testing.T, path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Suites   []struct {
			Name     string `xml:"name,attr"`
			Tests    int    `xml:"tests,attr"`
			Failures int    `xml:"failures,attr"`
			Cases    []struct {
				Name    string `xml:"name,attr"`
				Failure *struct {
					Type    string `xml:"type,attr"`
					Message string `xml:"message,attr"`
				} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("not XML: %v", err)
	}
	if len(doc.Suites) != 3 || doc.Tests != 150 {
		t.Fatalf("%d suites, %d tests; want 3 suites (canary, eu, us) of 150 devices", len(doc.Suites), doc.Tests)
	}
	us := doc.Suites[2]
	if us.Name != "demo-thermostat-fw/us" || us.Tests != 80 {
		t.Fatalf("third suite %q with %d tests, want demo-thermostat-fw/us with 80", us.Name, us.Tests)
	}
	// A quarter of the US devices never report the new firmware: those are the failures.
	var failed []string
	for _, c := range us.Cases {
		if c.Failure != nil {
			if c.Failure.Type != "verifyNotSatisfied" || !strings.Contains(c.Failure.Message, "verify condition") {
				t.Errorf("%s: failure %+v", c.Name, *c.Failure)
			}
			failed = append(failed, c.Name)
		}
	}
	if len(failed) != 20 || us.Failures != 20 || doc.Failures != 20 {
		t.Errorf("%d failing cases (suite says %d, file %d), want 20: %v", len(failed), us.Failures, doc.Failures, failed)
	}
	if doc.Suites[0].Failures+doc.Suites[1].Failures != 0 {
		t.Error("the canary and eu waves passed, yet have failures")
	}
}

func checkDemoHTML(t *testing.T, path string) {
	page, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Self-contained: nothing is loaded from anywhere.
	if m := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?(https?:|//)`).Find(page); m != nil {
		t.Errorf("the page fetches: %s", m)
	}
	b := findBrowser(t)
	dom, console := b.run(t, "--dump-dom", path)
	if console != "" {
		t.Errorf("console messages:\n%s", console)
	}
	for _, want := range []string{`id="timeline"`, `data-wave="canary"`, `data-wave="us"`, `data-wave="rollback"`,
		// The device table is built by the page's script: rows prove that it ran.
		"<td>us-0001</td>", "150 of 150 devices"} {
		if !strings.Contains(dom, want) {
			t.Errorf("the rendered page lacks %s", want)
		}
	}
	shot := filepath.Join(t.TempDir(), "report.png")
	b.run(t, "--screenshot="+shot, "--window-size=1200,900", path)
	checkScreenshot(t, shot)
}

// checkScreenshot checks that the page drew the timeline: many colours, the timeline's track colour
// over a sizeable area, and the failed wave's red bar.
func checkScreenshot(t *testing.T, path string) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	colours := map[[3]uint32]int{}
	bounds := img.Bounds()
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		for x := bounds.Min.X; x < bounds.Max.X; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			colours[[3]uint32{r >> 8, g >> 8, b >> 8}]++
		}
	}
	track, failedBar := colours[[3]uint32{0xf3, 0xf3, 0xf3}], colours[[3]uint32{0xc6, 0x28, 0x28}]
	if len(colours) < 16 || track < 5000 || failedBar < 2000 {
		t.Errorf("screenshot %v: %d colours, %d track pixels, %d failed-bar pixels; want a drawn timeline",
			bounds.Size(), len(colours), track, failedBar)
	}
}

// browser is a headless Chromium.
type browser struct{ path, profile string }

// findBrowser finds Debian's chromium. CI installs it (.ci/run), so there a missing browser fails the
// test; elsewhere it is skipped with how to install it.
func findBrowser(t *testing.T) browser {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return browser{path: p, profile: t.TempDir()}
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no chromium on PATH; .ci/run installs it")
	}
	t.Skip("no chromium on PATH (apt-get install chromium); CI runs this test")
	return browser{}
}

// consoleLine is how Chromium logs a page's console message with --enable-logging=stderr.
var consoleLine = regexp.MustCompile(`(?m)^.*:CONSOLE[:(].*$`)

// run opens the file at path in the browser with args and returns its standard output and the
// page's console messages.
func (b browser) run(t *testing.T, args ...string) (stdout, console string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	page := args[len(args)-1]
	abs, err := filepath.Abs(page)
	if err != nil {
		t.Fatal(err)
	}
	args = append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
		"--user-data-dir=" + b.profile, "--enable-logging=stderr", "--v=0"}, args[:len(args)-1]...)
	cmd := exec.CommandContext(ctx, b.path, append(args, "file://"+abs)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", b.path, err, errOut.String())
	}
	return out.String(), strings.Join(consoleLine.FindAllString(errOut.String(), -1), "\n")
}

// TestBrowserSeesConsoleErrors shows that the browser check can fail: a page whose script throws is
// caught.
func TestBrowserSeesConsoleErrors(t *testing.T) {
	b := findBrowser(t)
	bad := filepath.Join(t.TempDir(), "bad.html")
	if err := os.WriteFile(bad, []byte(`<!DOCTYPE html><p>x</p><script>undefinedFunction()</script>`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, console := b.run(t, "--dump-dom", bad); !strings.Contains(console, "undefinedFunction is not defined") {
		t.Errorf("the console error was not seen: %q", console)
	}
}
