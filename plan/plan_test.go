package plan_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/plan"
	"github.com/iot-rollout/rollout/query"
	"github.com/iot-rollout/rollout/schema"
)

func examples(tb testing.TB) []string {
	tb.Helper()
	files, err := filepath.Glob("../plans/examples/*.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	if len(files) < 5 {
		tb.Fatalf("found %d example plans, want at least 5", len(files))
	}
	return files
}

func mustLoad(tb testing.TB, name, src string) *plan.Plan {
	tb.Helper()
	p, ds := plan.Load(name, []byte(src))
	if p == nil {
		tb.Fatalf("%s: want a valid plan, got:\n%v", name, ds.Error())
	}
	return p
}

// TestExamples checks that every example plan loads without a single diagnostic and points editors
// at the schema on its first line.
func TestExamples(t *testing.T) {
	for _, file := range examples(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(data), "\n")
			if first != "# yaml-language-server: $schema=../../schema/plan.schema.json" {
				t.Errorf("first line %q does not name the schema", first)
			}
			p, ds := plan.LoadFile(file)
			if p == nil || len(ds) > 0 {
				t.Fatalf("diagnostics:\n%s", ds.Error())
			}
			if p.File != file || len(p.Hash) != 64 || len(p.Waves) == 0 {
				t.Errorf("plan not resolved: file %q hash %q waves %d", p.File, p.Hash, len(p.Waves))
			}
			for i, w := range p.Waves {
				if (w.Action.TwinUpdate == nil) == (w.Action.DirectMethod == nil) {
					t.Errorf("wave %d: want exactly one action, got %+v", i, w.Action)
				}
				if id := plan.JobID(p, i, 999, 0); len(id) > 64 {
					t.Errorf("job id %q is longer than 64", id)
				}
			}
		})
	}
}

// TestResolve checks that defaults, the plan's action and built-in defaults are merged into each wave
// key by key, with rates as fractions and durations parsed.
func TestResolve(t *testing.T) {
	p := mustLoad(t, "resolve.yaml", `
version: 1
name: resolve
description: checks merging
fleet: "tags.model = 'x'"
action:
  twinUpdate:
    tags: {ring: done, n: 3}
    desired: {firmware: {version: "2.4.0"}}
defaults:
  timeout: 10m
  batch: {size: 20}
  success: {minSuccessRate: 98%, maxFailures: 4}
  bake: 5m
  verify: {condition: "properties.reported.firmware.version = '2.4.0'", minRate: 90%}
  allowEmpty: true
waves:
  - name: canary
    target: "tags.ring = 'canary'"
    allowEmpty: false
    success: {minSuccessRate: 100%, minDevices: 2}
    batch: {growth: 1}
    approval: true
  - name: rest
    percent: 25%
    timeout: 1h
    verify: {within: 1h}
    action:
      directMethod: {name: reboot, payload: {delay: 5}, connectTimeout: 10s}
rollback:
  directMethod: {name: cancelReboot}
schedule:
  notBefore: 2026-12-01T02:00:00Z
  windows:
    - {days: [sat, sun], start: "22:00", end: "04:00", timeZone: Europe/Berlin}
`)
	c, r := p.Waves[0], p.Waves[1]
	checks := []struct {
		name      string
		got, want any
	}{
		{"fleet", p.Fleet, "tags.model = 'x'"},
		{"onFailure", p.OnFailure, plan.RollbackAll},
		{"canary target", c.Target, "tags.ring = 'canary'"},
		{"canary approval", c.Approval, true},
		{"canary allowEmpty", c.AllowEmpty, false},
		{"rest allowEmpty", r.AllowEmpty, true},
		{"canary timeout", c.Timeout, 10 * time.Minute},
		{"canary batch", c.Batch, plan.Batch{Size: 20, Growth: 1}},
		{"canary success", c.Success, plan.Success{MinSuccessRate: 1, MaxFailures: 4, MinDevices: 2}},
		{"canary bake", c.Bake, 5 * time.Minute},
		{"canary verify", *c.Verify, plan.Verify{Condition: "properties.reported.firmware.version = '2.4.0'", MinRate: 0.9, Within: plan.DefaultVerifyWithin}},
		{"canary tags", c.Action.TwinUpdate.Tags["n"], 3.0},
		{"rest target", r.Target, "*"},
		{"rest percent", r.Percent, 25.0},
		{"rest approval", r.Approval, false},
		{"rest timeout", r.Timeout, time.Hour},
		{"rest batch", r.Batch, plan.Batch{Size: 20, Growth: plan.DefaultBatchGrowth}},
		{"rest success", r.Success, plan.Success{MinSuccessRate: 0.98, MaxFailures: 4, MinDevices: plan.DefaultMinDevices}},
		{"rest verify within", r.Verify.Within, time.Hour},
		{"rest method", r.Action.DirectMethod.Name, "reboot"},
		{"rest payload", string(r.Action.DirectMethod.Payload), `{"delay":5}`},
		{"rest response timeout", r.Action.DirectMethod.ResponseTimeout, plan.DefaultResponseTimeout},
		{"rest connect timeout", r.Action.DirectMethod.ConnectTimeout, 10 * time.Second},
		{"rollback payload", string(p.Rollback.DirectMethod.Payload), "null"},
		{"notBefore", p.Schedule.NotBefore, time.Date(2026, 12, 1, 2, 0, 0, 0, time.UTC)},
		{"window days", p.Schedule.Windows[0].Days, []time.Weekday{time.Saturday, time.Sunday}},
		{"window start", p.Schedule.Windows[0].Start, 22 * time.Hour},
		{"window end", p.Schedule.Windows[0].End, 4 * time.Hour},
		{"window zone", p.Schedule.Windows[0].Location.String(), "Europe/Berlin"},
	}
	for _, c := range checks {
		if !equalJSON(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
}

func equalJSON(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ja, jb)
}

// TestDefaultsMatchSchema keeps the Go defaults and the schema's "default" annotations, which editors
// show, saying the same thing.
func TestDefaultsMatchSchema(t *testing.T) {
	var s map[string]any
	if err := json.Unmarshal(schema.Plan, &s); err != nil {
		t.Fatal(err)
	}
	at := func(path ...string) any {
		var cur any = s
		for _, p := range path {
			cur = cur.(map[string]any)[p]
		}
		return cur.(map[string]any)["default"]
	}
	dur := func(v any) any {
		d, err := time.ParseDuration(v.(string))
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	defs := []string{"definitions"}
	prop := func(def, name string) []string { return append(defs, def, "properties", name) }
	checks := []struct {
		name      string
		got, want any
	}{
		{"timeout", dur(at(prop("settings", "timeout")...)), plan.DefaultTimeout},
		{"bake", dur(at(prop("settings", "bake")...)), plan.DefaultBake},
		{"batch.size", at(prop("batch", "size")...), float64(plan.DefaultBatchSize)},
		{"batch.growth", at(prop("batch", "growth")...), plan.DefaultBatchGrowth},
		{"minSuccessRate", at(prop("success", "minSuccessRate")...), "95%"},
		{"minDevices", at(prop("success", "minDevices")...), float64(plan.DefaultMinDevices)},
		{"verify.minRate", at(prop("verify", "minRate")...), "100%"},
		{"verify.within", dur(at(prop("verify", "within")...)), plan.DefaultVerifyWithin},
		{"responseTimeout", dur(at(prop("directMethod", "responseTimeout")...)), plan.DefaultResponseTimeout},
		{"connectTimeout", dur(at(prop("directMethod", "connectTimeout")...)), plan.DefaultConnectTimeout},
		{"percent", at(prop("wave", "percent")...), plan.DefaultPercent},
		{"onFailure", at("properties", "onFailure"), string(plan.DefaultOnFailure)},
		{"retry.attempts", at(prop("retry", "attempts")...), float64(plan.DefaultRetryAttempts)},
		{"retry.backoff", dur(at(prop("retry", "backoff")...)), plan.DefaultRetryBackoff},
		{"retry.within", dur(at(prop("retry", "within")...)), plan.DefaultRetryWithin},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: schema default %v, Go default %v", c.name, c.got, c.want)
		}
	}
	retry := s["definitions"].(map[string]any)["retry"].(map[string]any)["properties"].(map[string]any)
	if m := retry["attempts"].(map[string]any)["maximum"]; m != float64(plan.MaxRetryAttempts) {
		t.Errorf("retry.attempts: schema maximum %v, Go %d", m, plan.MaxRetryAttempts)
	}
	if on := fmt.Sprint(at(prop("retry", "on")...)); on != fmt.Sprint(plan.DefaultRetryOn) {
		t.Errorf("retry.on: schema default %s, Go default %s", on, fmt.Sprint(plan.DefaultRetryOn))
	}
	if plan.DefaultMinSuccessRate != 0.95 || plan.DefaultVerifyMinRate != 1 {
		t.Errorf("rate defaults %v, %v disagree with the schema's 95%% and 100%%", plan.DefaultMinSuccessRate, plan.DefaultVerifyMinRate)
	}
}

// TestJobID checks the job id format and that the longest allowed name still fits IoT Hub's 64
// characters of letters, digits and '-'.
func TestJobID(t *testing.T) {
	p := &plan.Plan{Name: strings.Repeat("a", plan.MaxNameLength), Hash: "0123456789abcdef"}
	cases := []struct {
		wave, batch, part int
		want              string
	}{
		{0, 0, 0, p.Name + "-01234567-w00-b000"},
		{3, 12, 2, p.Name + "-01234567-w03-b012-p2"},
		{99, 999, 9999, p.Name + "-01234567-w99-b999-p9999"},
	}
	for _, c := range cases {
		got := plan.JobID(p, c.wave, c.batch, c.part)
		if got != c.want {
			t.Errorf("JobID(%d, %d, %d) = %q, want %q", c.wave, c.batch, c.part, got, c.want)
		}
		if len(got) > 64 || strings.Trim(got, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") != "" {
			t.Errorf("JobID %q is not a valid IoT Hub job id", got)
		}
	}
}

// TestHash checks that the hash follows meaning, not formatting.
func TestHash(t *testing.T) {
	base := `version: 1
name: h
description: one
action: {twinUpdate: {desired: {mode: eco, level: 3}}}
defaults: {timeout: 30m}
waves:
  - {name: canary, target: "tags.ring = 'canary'"}
  - {name: rest, target: "*", percent: 50}
`
	same := map[string]string{
		"block style and key order": `name: h
version: 1
waves:
  - target: "tags.ring = 'canary'"
    name: canary
  - name: rest
    percent: 50.0
    target: '*'
action:
  twinUpdate:
    desired:
      level: 3
      mode: eco
`,
		"defaults written out":          strings.Replace(base, "defaults: {timeout: 30m}", "defaults: {timeout: 1800s, batch: {size: 100, growth: 2}, bake: 0s}", 1),
		"description changed":           strings.Replace(base, "description: one", "description: two", 1),
		"percent with a % sign":         strings.Replace(base, "percent: 50}", "percent: 50%}", 1),
		"allowEmpty: false written out": strings.Replace(base, "percent: 50}", "percent: 50, allowEmpty: false}", 1),
		"value moved to waves":          strings.Replace(strings.Replace(base, "defaults: {timeout: 30m}\n", "", 1), `"*", percent: 50}`, `"*", percent: 50, timeout: 30m}`, 1),
	}
	different := map[string]string{
		"payload value": strings.Replace(base, "level: 3", "level: 4", 1),
		"timeout":       strings.Replace(base, "timeout: 30m", "timeout: 31m", 1),
		"percent":       strings.Replace(base, "percent: 50", "percent: 51", 1),
		"target":        strings.Replace(base, "'canary'", "'pilot'", 1),
		"on failure":    base + "onFailure: halt\n",
		"name":          strings.Replace(base, "name: h", "name: h2", 1),
		"allowEmpty":    strings.Replace(base, "percent: 50}", "percent: 50, allowEmpty: true}", 1),
	}
	want := mustLoad(t, "base.yaml", base).Hash
	for name, src := range same {
		if got := mustLoad(t, name, src).Hash; got != want {
			t.Errorf("%s: hash changed", name)
		}
	}
	for name, src := range different {
		p, ds := plan.Load(name, []byte(src))
		if p == nil {
			t.Fatalf("%s: %v", name, ds.Error())
		}
		if p.Hash == want {
			t.Errorf("%s: hash did not change", name)
		}
	}
}

// TestCondition checks how wave conditions compose: fleet AND target AND NOT earlier full waves.
func TestCondition(t *testing.T) {
	p := mustLoad(t, "cond.yaml", `version: 1
name: cond
fleet: "tags.model = 'x'"
action: {twinUpdate: {tags: {done: true}}}
waves:
  - {name: canary, target: "tags.ring = 'canary'"}
  - {name: eu-sample, target: "tags.region = 'eu'", percent: 10}
  - {name: eu, target: "tags.region = 'eu' OR tags.region = 'uk'"}
  - {name: rest, target: "*"}
`)
	parse := func(s string) query.Expr {
		e, err := query.ParseCondition(s)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	want := []string{
		"tags.model = 'x' AND tags.ring = 'canary'",
		// Earlier targets are guarded so a device without tags.ring is not left out of later waves.
		"tags.model = 'x' AND tags.region = 'eu' AND NOT (IS_DEFINED(tags.ring) AND tags.ring = 'canary')",
		// The 10% sample is not excluded: the engine subtracts its stored devices.
		"tags.model = 'x' AND (tags.region = 'eu' OR tags.region = 'uk') AND NOT (IS_DEFINED(tags.ring) AND tags.ring = 'canary')",
		"tags.model = 'x' AND NOT ((IS_DEFINED(tags.ring) AND tags.ring = 'canary') OR " +
			"(IS_DEFINED(tags.region) AND tags.region = 'eu') OR (IS_DEFINED(tags.region) AND tags.region = 'uk'))",
	}
	for i, w := range want {
		got := p.Condition(i)
		if !query.Equal(got, parse(w)) {
			t.Errorf("wave %d: Condition = %s\nwant %s", i, query.Format(got), w)
		}
	}
	all := mustLoad(t, "all.yaml", "version: 1\nname: all\naction: {twinUpdate: {tags: {a: 1}}}\nwaves: [{name: w, target: 'tags.a = 1'}]\n")
	if got := query.Format(all.Condition(0)); got != "tags.a = 1" {
		t.Errorf("single wave without fleet: %q", got)
	}
}

// TestHugeInput checks that a 50 MB plan is refused at once, before it is parsed or even read whole.
func TestHugeInput(t *testing.T) {
	big := bytes.Repeat([]byte("# a comment line of a plan that is far too large to be a real plan\n"), 50<<20/67)
	file := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(file, big, 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	p, ds := plan.LoadFile(file)
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("LoadFile of 50 MB took %v", elapsed)
	}
	if p != nil || len(ds) != 1 || !strings.Contains(ds[0].Message, "larger than") || ds[0].Line != 1 {
		t.Errorf("got %v", ds)
	}
	if _, ds := plan.Load("big.yaml", big); len(ds) != 1 || !strings.Contains(ds[0].Message, "larger than") {
		t.Errorf("Load: got %v", ds)
	}
}

// TestDiagnosticsSorted checks that problems from the loader, the schema and the semantic pass come
// back together in file order.
func TestDiagnosticsSorted(t *testing.T) {
	_, ds := plan.Load("x.yaml", []byte(`version: 1
name: BAD
action: {twinUpdate: {tags: {"a.b": 1}}}
waves:
  - {name: w, target: "tags.x = = 1", sucess: {}}
  - {name: w, target: "tags.y = 1", timeout: 0s}
onFailure: rollbak
`))
	if len(ds) < 6 {
		t.Fatalf("want at least 6 diagnostics, got:\n%s", ds.Error())
	}
	for i := 1; i < len(ds); i++ {
		a, b := ds[i-1], ds[i]
		if a.Line > b.Line || a.Line == b.Line && a.Col > b.Col {
			t.Errorf("not sorted: %v before %v", a, b)
		}
	}
}

// TestNumberForms checks that numbers are read the same whichever way YAML writes them.
func TestNumberForms(t *testing.T) {
	for _, size := range []string{"1000", "1e3", "1000.0", "0x3e8", "1_000"} {
		p, ds := plan.Load("n.yaml", []byte("version: 1\nname: n\naction: {twinUpdate: {tags: {a: 1}}}\nwaves: [{name: w, target: 'tags.a = 1', batch: {size: "+size+"}}]\n"))
		if p == nil {
			t.Errorf("size %s: %s", size, ds.Error())
			continue
		}
		if got := p.Waves[0].Batch.Size; got != 1000 {
			t.Errorf("size %s read as %d", size, got)
		}
	}
}

// BenchmarkLoadExample measures Load of the largest example plan in-process (the whole-process figure
// is cmd/rollout's BenchmarkValidateProcess50Waves).
func BenchmarkLoadExample(b *testing.B) {
	data, err := os.ReadFile("../plans/examples/multi-wave-batches.yaml")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if p, ds := plan.Load("multi-wave-batches.yaml", data); p == nil {
			b.Fatal(ds.Error())
		}
	}
}

func TestChanges(t *testing.T) {
	const base = `version: 1
name: fw
action:
  twinUpdate: {desired: {fw: "2"}}
waves:
  - {name: canary, target: "tags.ring = 'canary'"}
  - {name: rest, target: "*"}
`
	was := plan.Parts(mustLoad(t, "a.yaml", base))
	tests := []struct {
		name, edit string
		want       []string
	}{
		{"reformatted", strings.Replace(base, "twinUpdate: {desired: {fw: \"2\"}}", "twinUpdate:\n    desired:\n      fw: '2'", 1), nil},
		{"a wave's target", strings.Replace(base, "'canary'", "'ring0'", 1), []string{"wave canary changed"}},
		{"the action", strings.Replace(base, `"2"`, `"3"`, 1), []string{"wave canary changed", "wave rest changed"}},
		{"onFailure", base + "onFailure: halt\n", []string{"onFailure changed"}},
		{"a wave added", strings.Replace(base, "  - {name: rest", "  - {name: eu, target: \"tags.region = 'eu'\"}\n  - {name: rest", 1),
			[]string{"wave eu added", "wave order changed"}},
		{"a wave removed", strings.Replace(base, "  - {name: rest, target: \"*\"}\n", "", 1), []string{"wave order changed", "wave rest removed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := plan.Changes(was, plan.Parts(mustLoad(t, "b.yaml", tt.edit)))
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Changes = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestMaxUnreachable(t *testing.T) {
	const src = `version: 1
name: fw
action:
  directMethod: {name: update}
rollback:
  directMethod: {name: revert}
defaults:
  success: {maxUnreachable: 10%}
waves:
  - {name: canary, target: "tags.ring = 'canary'", success: {maxUnreachable: 2}}
  - {name: rest, target: "*"}
`
	p := mustLoad(t, "p.yaml", src)
	if l := p.Waves[0].Success.MaxUnreachable; l == nil || l.Ratio || l.Count != 2 || l.String() != "2" {
		t.Errorf("canary: %+v, want a count of 2", l)
	}
	if l := p.Waves[1].Success.MaxUnreachable; l == nil || !l.Ratio || l.Share != 0.1 || l.String() != "10%" {
		t.Errorf("rest: %+v, want a share of 10%% from defaults", l)
	}
	if !(plan.Limit{Count: 2}).Exceeded(3, 100) || (plan.Limit{Share: 0.1, Ratio: true}).Exceeded(10, 100) {
		t.Error("Exceeded is off")
	}
	without := strings.Replace(strings.Replace(src, "defaults:\n  success: {maxUnreachable: 10%}\n", "", 1), ", success: {maxUnreachable: 2}", "", 1)
	if q := mustLoad(t, "q.yaml", without); q.Waves[0].Success.MaxUnreachable != nil {
		t.Error("no maxUnreachable must mean no bound")
	}
	if _, ds := plan.Load("bad.yaml", []byte(strings.Replace(src, "maxUnreachable: 2", "maxUnreachable: lots", 1))); !ds.HasErrors() {
		t.Error("maxUnreachable: lots must be an error")
	}
}

func TestVerifyHold(t *testing.T) {
	p := mustLoad(t, "p.yaml", `version: 1
name: fw
action:
  twinUpdate: {desired: {fw: "2"}}
defaults:
  verify: {condition: "properties.reported.fw = '2'", within: 10m, hold: 5m}
waves:
  - {name: canary, target: "tags.ring = 'canary'"}
  - {name: rest, target: "*", verify: {hold: 0s}}
`)
	if h := p.Waves[0].Verify.Hold; h != 5*time.Minute {
		t.Errorf("canary hold %s, want 5m", h)
	}
	if h := p.Waves[1].Verify.Hold; h != 0 {
		t.Errorf("rest hold %s, want 0s from its own verify", h)
	}
}

func TestBudget(t *testing.T) {
	src := `version: 1
name: fw
action:
  twinUpdate: {desired: {fw: "2"}}
budget: {maxFailures: 50, maxFailureRate: 2%}
waves:
  - {name: all, target: "*"}
`
	p := mustLoad(t, "p.yaml", src)
	if b := p.Budget; b == nil || b.MaxFailures != 50 || !b.RateSet || b.MaxFailureRate != 0.02 || b.MinDevices != 100 {
		t.Fatalf("budget %+v, want 50 failures, 2%%, minDevices 100 by default", b)
	}
	without := mustLoad(t, "q.yaml", strings.Replace(src, "budget: {maxFailures: 50, maxFailureRate: 2%}\n", "", 1))
	if without.Budget != nil || without.Hash == p.Hash {
		t.Errorf("no budget must mean none, and a budget must change the hash")
	}
	if _, ds := plan.Load("bad.yaml", []byte(strings.Replace(src, "maxFailures: 50", "maxFailures: many", 1))); !ds.HasErrors() {
		t.Error("a budget's maxFailures must be a number")
	}
}

func TestRetry(t *testing.T) {
	const src = `version: 1
name: fw
action:
  directMethod: {name: install, idempotent: true}
onFailure: halt
defaults:
  retry: {attempts: 2, backoff: 30s, on: [unreachable, timedOut]}
waves:
  - {name: canary, target: "tags.ring = 'canary'", retry: {within: 10m}}
  - {name: eu, target: "tags.ring = 'eu'", retry: {attempts: 0}}
  - {name: rest, target: "*"}
`
	p := mustLoad(t, "p.yaml", src)
	want := &plan.Retry{Attempts: 2, Backoff: 30 * time.Second, Within: 10 * time.Minute, On: []string{"unreachable", "timedOut"}}
	if got := p.Waves[0].Retry; !reflect.DeepEqual(got, want) {
		t.Errorf("canary retry %+v, want %+v", got, want)
	}
	if p.Waves[1].Retry != nil {
		t.Errorf("attempts: 0 must mean no retries, got %+v", p.Waves[1].Retry)
	}
	if r := p.Waves[2].Retry; r == nil || r.Within != plan.DefaultRetryWithin || !r.Retries(plan.RetryTimedOut) || r.Retries(plan.RetryMethodError) {
		t.Errorf("rest retry %+v, want the defaults' with within %s", r, plan.DefaultRetryWithin)
	}
	if !p.Waves[0].Action.DirectMethod.Idempotent {
		t.Error("idempotent: true not read")
	}
	bare := mustLoad(t, "q.yaml", strings.Replace(src, "  retry: {attempts: 2, backoff: 30s, on: [unreachable, timedOut]}\n", "  retry: {}\n", 1))
	if r := bare.Waves[2].Retry; r == nil || r.Attempts != plan.DefaultRetryAttempts || r.Backoff != plan.DefaultRetryBackoff || !reflect.DeepEqual(r.On, plan.DefaultRetryOn) {
		t.Errorf("retry: {} = %+v, want the built-in defaults", r)
	}
	none := mustLoad(t, "n.yaml", `version: 1
name: fw
action:
  directMethod: {name: install}
onFailure: halt
waves:
  - {name: all, target: "*"}
`)
	same := mustLoad(t, "s.yaml", `version: 1
name: fw
action:
  directMethod: {name: install, idempotent: false}
onFailure: halt
defaults: {retry: {attempts: 0}}
waves:
  - {name: all, target: "*"}
`)
	if none.Waves[0].Retry != nil || none.Hash != same.Hash {
		t.Error("a plan without retries, or declaring idempotent: false, must keep its hash")
	}
	// Without idempotent, retrying timedOut is refused, once, where it is written.
	_, ds := plan.Load("bad.yaml", []byte(strings.Replace(src, "idempotent: true", "idempotent: false", 1)))
	var errs []string
	for _, d := range ds {
		if d.Severity == plan.Error {
			errs = append(errs, d.String())
		}
	}
	if len(errs) != 1 || !strings.Contains(errs[0], "defaults.retry.on[1]: retrying timedOut calls install again") {
		t.Errorf("diagnostics %q, want one error at defaults.retry.on[1]", errs)
	}
}
