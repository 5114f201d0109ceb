package plan

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	// Time zones in schedule windows must resolve on machines without a zoneinfo database (minimal
	// containers, CI images), so the database is compiled in.
	_ "time/tzdata"

	"gopkg.in/yaml.v3"

	"github.com/iot-rollout/rollout/query"
)

// Defaults for settings that neither a wave nor the plan's defaults set. The schema's "default"
// annotations state the same values for editors; a test keeps the two in step.
const (
	// DefaultTimeout is each job's maxExecutionTimeInSeconds: long enough for a batch of a few
	// hundred devices at S1's 10 device operations per second, with room for slow devices.
	DefaultTimeout = 30 * time.Minute
	// DefaultBatchSize is the first batch's device count: small, so a bad change meets few devices
	// in a job that cannot be cancelled.
	DefaultBatchSize = 100
	// DefaultBatchGrowth doubles each batch, so large waves still finish in a few jobs.
	DefaultBatchGrowth = 2.0
	// DefaultMinSuccessRate is the success gate's rate when none is set (95%).
	DefaultMinSuccessRate = 0.95
	// DefaultMaxFailures means no limit on the count of failures; the rate gate applies alone.
	DefaultMaxFailures = -1
	// DefaultBudgetMinDevices is how many devices a rollout targets before its budget's failure rate
	// is judged.
	DefaultBudgetMinDevices = 100
	// DefaultMinDevices keeps the rate gate from judging on one or two unlucky devices.
	DefaultMinDevices = 10
	// DefaultBake is no bake: a wave that passes its gate hands over at once.
	DefaultBake = time.Duration(0)
	// DefaultVerifyMinRate is the share of a wave's devices a verify condition must hold for (100%).
	DefaultVerifyMinRate = 1.0
	// DefaultVerifyWithin is how long verify waits for the condition to be met; twin queries lag
	// by seconds to minutes, so it is generous.
	DefaultVerifyWithin = 15 * time.Minute
	// DefaultResponseTimeout is IoT Hub's own default responseTimeoutInSeconds.
	DefaultResponseTimeout = 30 * time.Second
	// DefaultConnectTimeout is IoT Hub's own default connectTimeoutInSeconds: do not wait for a
	// disconnected device.
	DefaultConnectTimeout = time.Duration(0)
	// MaxWaves is the most waves a plan may have: job ids give the wave index two digits. The schema
	// enforces it; semantic checks look at no more waves than this, so an oversized list costs
	// nothing.
	MaxWaves = 100
	// DefaultPercent takes all of what a wave's target selects.
	DefaultPercent = 100.0
	// DefaultRetryAttempts is how many further tries a retry block without attempts makes.
	DefaultRetryAttempts = 3
	// MaxRetryAttempts bounds attempts: retry job ids give the attempt one digit.
	MaxRetryAttempts = 9
	// DefaultRetryBackoff is the wait before the first retry; it doubles for each later one.
	DefaultRetryBackoff = time.Minute
	// DefaultRetryWithin is how old a wave may be when a retry starts.
	DefaultRetryWithin = time.Hour
)

// DefaultRetryOn is what a retry block without on retries: devices that were not online, on which
// a direct method never ran.
var DefaultRetryOn = []string{RetryUnreachable}

// Hub limits the validator enforces (reference: IoT Hub quotas, jobs and twin documentation).
const (
	// MaxQueryLength is the longest query IoT Hub accepts, in characters. A job's condition is run as
	// "SELECT * FROM devices WHERE <condition>", so the condition gets what the prefix leaves.
	MaxQueryLength = query.MaxLength
	// MinResponseTimeout and MaxResponseTimeout bound a direct method's responseTimeoutInSeconds.
	MinResponseTimeout = 5 * time.Second
	MaxResponseTimeout = 300 * time.Second
	// MaxConnectTimeout bounds a direct method's connectTimeoutInSeconds (from 0).
	MaxConnectTimeout = 300 * time.Second
	// MaxPayload is the largest direct-method payload IoT Hub accepts, in bytes.
	MaxPayload = 128 << 10
)

// jobQueryPrefix is what the hub puts before a job's queryCondition.
const jobQueryPrefix = "SELECT * FROM devices WHERE "

// ref is a node with its document path; node is nil when the key is absent.
type ref struct {
	key  *yaml.Node // the mapping key holding node; nil for list items
	node *yaml.Node
	path string
}

func (r ref) ok() bool { return r.node != nil }

// at returns r's position node: the key when there is one (so "missing" messages point at the key).
func (r ref) at() *yaml.Node {
	if r.key != nil {
		return r.key
	}
	return r.node
}

// get returns the value under key in mapping r.
func (r ref) get(key string) ref {
	if r.node == nil {
		return ref{path: keyPath(r.path, key)}
	}
	k, v := lookup(r.node, key)
	return ref{key: k, node: v, path: keyPath(r.path, key)}
}

// pick returns the first present ref: a wave's own setting before the plan's defaults.
func pick(rs ...ref) ref {
	for _, r := range rs {
		if r.ok() {
			return r
		}
	}
	return rs[len(rs)-1]
}

// str returns r's value when it is a string scalar; wrong types were reported by the schema.
func str(r ref) (string, bool) {
	n := deref(r.node)
	if n == nil || n.Kind != yaml.ScalarNode {
		return "", false
	}
	if t := n.ShortTag(); t != "!!str" && t != "!!timestamp" {
		return "", false
	}
	return n.Value, true
}

func number(r ref) (float64, bool) {
	n := deref(r.node)
	if n == nil || n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!float") {
		return 0, false
	}
	var f float64
	if err := n.Decode(&f); err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

// integer returns r's value when it is a whole number, written as an integer or as a float such as
// 1e3 (which JSON Schema's "integer" also accepts).
func integer(r ref) (int, bool) {
	f, ok := number(r)
	if !ok || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, false
	}
	return int(f), true
}

// duration parses a duration setting, falling back to def when absent or mistyped.
func (l *loader) duration(r ref, def time.Duration) time.Duration {
	s, ok := str(r)
	if !ok {
		return def
	}
	if !durationPattern().MatchString(s) {
		return def // the schema reported it
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		l.errorf(r.node, r.path, "invalid duration %q: %v", s, err)
		return def
	}
	return d
}

// durationPattern is the schema's pattern for durations, so that values the schema already rejected
// are not reported twice.
var durationPattern = sync.OnceValue(func() *regexp.Regexp {
	if c, err := compiledSchema(); err == nil {
		if p, ok := c.at("/definitions/duration")["pattern"].(string); ok {
			if re, err := regexp.Compile(p); err == nil {
				return re
			}
		}
	}
	return regexp.MustCompile(`^$`)
})

// rate parses a percentage such as 98% into a fraction.
func rate(r ref, def float64) float64 {
	f, ok := percentage(r)
	if !ok {
		return def
	}
	return f / 100
}

// percentage parses a percentage such as 98% into its number, 98, when it is from 0 to 100.
func percentage(r ref) (float64, bool) {
	s, ok := str(r)
	if !ok || !strings.HasSuffix(s, "%") {
		return 0, false
	}
	f, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	if err != nil || f < 0 || f > 100 {
		return 0, false
	}
	return f, true
}

// wholeSeconds reports a duration the hub must receive in whole seconds.
func (l *loader) wholeSeconds(r ref, d time.Duration) {
	if r.ok() && d%time.Second != 0 {
		l.add(Error, r.node, r.path, "IoT Hub takes this value in whole seconds", "%v is not a whole number of seconds", d)
	}
}

// checker carries what the semantic pass learns about the document.
type checker struct {
	*loader
	actions map[*yaml.Node]*Action // parsed action per node, so a shared action is checked once
	conds   map[*yaml.Node]query.Expr
	p       *Plan
	said    map[string]bool // diagnostics once added, see once
}

// check runs every semantic check and builds the resolved plan as it goes. The plan is meaningful
// only when no error was reported.
func (l *loader) check() *Plan {
	c := &checker{loader: l, actions: map[*yaml.Node]*Action{}, conds: map[*yaml.Node]query.Expr{}, said: map[string]bool{}}
	root := ref{node: l.root}
	p := &Plan{Version: 1, File: l.file, OnFailure: DefaultOnFailure}
	c.p = p
	p.Name, _ = str(root.get("name"))
	p.Description, _ = str(root.get("description"))

	fleet := root.get("fleet")
	if s, ok := str(fleet); ok {
		p.Fleet = s
		c.condition(fleet, "fleet")
	}
	onFailure := root.get("onFailure")
	if s, ok := str(onFailure); ok && (s == string(Halt) || s == string(RollbackAll)) {
		p.OnFailure = FailurePolicy(s)
	}
	if b := root.get("budget"); b.ok() {
		budget := &Budget{MaxFailures: DefaultMaxFailures, MinDevices: DefaultBudgetMinDevices}
		if v, ok := integer(b.get("maxFailures")); ok {
			budget.MaxFailures = v
		}
		if f, ok := percentage(b.get("maxFailureRate")); ok {
			budget.MaxFailureRate, budget.RateSet = f/100, true
		}
		if v, ok := integer(b.get("minDevices")); ok {
			budget.MinDevices = v
		}
		p.Budget = budget
	}

	c.hubs(root.get("hubs"))
	topAction := root.get("action")
	defaults := root.get("defaults")
	waves := root.get("waves")
	if n := deref(waves.node); n != nil && n.Kind == yaml.SequenceNode {
		names := map[string]ref{}
		for i, wn := range n.Content[:min(len(n.Content), MaxWaves)] {
			w := ref{node: wn, path: indexPath(waves.path, i)}
			if deref(wn).Kind != yaml.MappingNode {
				continue
			}
			wave := c.wave(w, topAction, defaults)
			name := w.get("name")
			if wave.Name != "" {
				if first, dup := names[wave.Name]; dup {
					c.add(Error, name.node, name.path, "wave names identify waves in rollout approve and status",
						"wave name %q is already used by %s", wave.Name, strings.TrimSuffix(first.path, ".name"))
				} else {
					names[wave.Name] = name
				}
			}
			p.Waves = append(p.Waves, wave)
		}
		c.waveSets(n, waves.path)
	}

	c.unusedHubs(root.get("hubs"))
	c.rollback(root, onFailure)
	c.schedule(root.get("schedule"))
	c.risks(root, onFailure, waves)
	if !c.diags.HasErrors() {
		c.querySizes(waves)
	}
	return p
}

// wave checks one wave and resolves it against the plan's defaults and action.
func (c *checker) wave(w, topAction, defaults ref) Wave {
	var wave Wave
	wave.Name, _ = str(w.get("name"))
	wave.Hubs = c.waveHubs(w)

	target := w.get("target")
	wave.Target = "*"
	if s, ok := str(target); ok {
		wave.Target = s
		c.condition(target, "target")
	}
	wave.Percent = DefaultPercent
	percent := w.get("percent")
	if f, ok := number(percent); ok {
		wave.Percent = f
		if f > 0 && f < 1 {
			c.add(Warning, percent.node, percent.path, fmt.Sprintf("write %g for that share of the target, or %g%% to keep the small sample", f*100, f),
				"percent %g selects %g%% of the target; did you mean %g?", f, f, f*100)
		}
	} else if f, ok := percentage(percent); ok && f > 0 {
		wave.Percent = f
	}
	if b := deref(pick(w.get("allowEmpty"), defaults.get("allowEmpty")).node); b != nil && b.ShortTag() == "!!bool" {
		_ = b.Decode(&wave.AllowEmpty) // not a boolean: the schema reported it
	}
	approval := deref(w.get("approval").node)
	wave.Approval = approval != nil && (approval.Value == "required" || approval.ShortTag() == "!!bool" && approval.Value == "true")

	// Action: the wave's own, else the plan's.
	a := pick(w.get("action"), topAction)
	if !a.ok() {
		at := w.get("name").at()
		if at == nil {
			at = w.node
		}
		c.add(Error, at, w.path, "set action at the top of the plan, or in this wave",
			"wave %q has no action", wave.Name)
	} else if act := c.action(a); act != nil {
		wave.Action = *act
	}

	// Settings: each key from the wave, else from defaults, else the built-in default.
	timeout := pick(w.get("timeout"), defaults.get("timeout"))
	wave.Timeout = c.duration(timeout, DefaultTimeout)
	if timeout.ok() && wave.Timeout <= 0 {
		c.add(Error, timeout.node, timeout.path, "set a job timeout such as 30m", "job timeout must be more than 0")
	}
	c.wholeSeconds(timeout, wave.Timeout)

	size := pick(w.get("batch").get("size"), defaults.get("batch").get("size"))
	growth := pick(w.get("batch").get("growth"), defaults.get("batch").get("growth"))
	wave.Batch = Batch{Size: DefaultBatchSize, Growth: DefaultBatchGrowth}
	if v, ok := integer(size); ok {
		wave.Batch.Size = v
	}
	if v, ok := number(growth); ok {
		wave.Batch.Growth = v
	}

	success := func(key string) ref { return pick(w.get("success").get(key), defaults.get("success").get(key)) }
	minRate := success("minSuccessRate")
	maxFail := success("maxFailures")
	minDev := success("minDevices")
	wave.Success = Success{MinSuccessRate: rate(minRate, DefaultMinSuccessRate), MaxFailures: DefaultMaxFailures, MinDevices: DefaultMinDevices}
	if v, ok := integer(maxFail); ok {
		wave.Success.MaxFailures = v
	}
	if v, ok := integer(minDev); ok {
		wave.Success.MinDevices = v
	}
	maxUnreach := success("maxUnreachable")
	if v, ok := integer(maxUnreach); ok && v >= 0 {
		wave.Success.MaxUnreachable = &Limit{Count: v}
	} else if f, ok := percentage(maxUnreach); ok {
		wave.Success.MaxUnreachable = &Limit{Share: f / 100, Ratio: true}
	}
	c.thresholds(wave, minRate, minDev, size, growth)

	wave.Bake = c.duration(pick(w.get("bake"), defaults.get("bake")), DefaultBake)

	wv, dv := w.get("verify"), defaults.get("verify")
	if wv.ok() || dv.ok() {
		verify := func(key string) ref { return pick(wv.get(key), dv.get(key)) }
		v := &Verify{}
		cond := verify("condition")
		if s, ok := str(cond); ok {
			v.Condition = s
			c.condition(cond, "verify condition")
		} else if !cond.ok() {
			at := wv
			if !at.ok() {
				at = dv
			}
			c.add(Error, at.at(), at.path, "say what a healthy device reports, e.g. properties.reported.firmware.version = '2.4.0'",
				"verify needs a condition")
		}
		minRate := verify("minRate")
		v.MinRate = rate(minRate, DefaultVerifyMinRate)
		if minRate.ok() && v.MinRate == 0 {
			c.add(Warning, minRate.node, minRate.path, "set the share of devices that must pass, e.g. 95%",
				"verify.minRate 0%% never fails")
		}
		within := verify("within")
		v.Within = c.duration(within, DefaultVerifyWithin)
		v.Hold = c.duration(verify("hold"), 0)
		if within.ok() && v.Within <= 0 {
			c.add(Error, within.node, within.path, "give verify time to see devices report, e.g. 15m", "verify.within must be more than 0")
		}
		wave.Verify = v
	}
	wave.Retry = c.retry(w.get("retry"), defaults.get("retry"), wave.Action)
	return wave
}

// retry checks and resolves a wave's retry block (wr) over the defaults' (dr), key by key; nil when
// neither has one or attempts is 0. Retrying timedOut devices of a direct method needs
// directMethod.idempotent: the method may have run on them.
func (c *checker) retry(wr, dr ref, a Action) *Retry {
	if !wr.ok() && !dr.ok() {
		return nil
	}
	get := func(key string) ref { return pick(wr.get(key), dr.get(key)) }
	rt := &Retry{Attempts: DefaultRetryAttempts, On: DefaultRetryOn}
	if v, ok := integer(get("attempts")); ok {
		rt.Attempts = v
	}
	rt.Backoff = c.duration(get("backoff"), DefaultRetryBackoff)
	within := get("within")
	rt.Within = c.duration(within, DefaultRetryWithin)
	if within.ok() && rt.Within <= 0 {
		c.once(Error, within, "give retries time, e.g. 1h", "retry.within must be more than 0")
	}
	on := get("on")
	if n := deref(on.node); n != nil && n.Kind == yaml.SequenceNode {
		rt.On = nil
		for i, item := range n.Content {
			class, ok := str(ref{node: item})
			if !ok || slices.Contains(rt.On, class) {
				continue // the schema reported it
			}
			rt.On = append(rt.On, class)
			m := a.DirectMethod
			if m == nil || m.Idempotent {
				continue
			}
			at := ref{node: item, path: indexPath(on.path, i)}
			switch class {
			case RetryTimedOut:
				c.once(Error, at, "declare directMethod.idempotent: true if running the method twice on a device is harmless, or retry only unreachable devices",
					"retrying timedOut calls %s again on devices where it may have run", m.Name)
			case RetryMethodError:
				c.once(Warning, at, "retry methodError only when an error answer means the device did nothing, or declare directMethod.idempotent: true",
					"retrying methodError calls %s again on devices that answered it", m.Name)
			}
		}
	}
	if rt.Attempts <= 0 {
		return nil
	}
	return rt
}

// once adds a diagnostic at r unless one was added there already: a defaults block is checked once
// for every wave that inherits it.
func (c *checker) once(sev Severity, r ref, hint, format string, args ...any) {
	key := fmt.Sprintf("%p %s %s", r.at(), r.path, format)
	if c.said[key] {
		return
	}
	c.said[key] = true
	c.add(sev, r.node, r.path, hint, format, args...)
}

// thresholds flags gates that cannot work as written.
func (c *checker) thresholds(wave Wave, minRate, minDev, size, growth ref) {
	s := wave.Success
	if minRate.ok() && s.MinSuccessRate == 0 {
		c.add(Warning, minRate.node, minRate.path, "set a real threshold such as 95%, or rely on maxFailures alone by omitting it",
			"minSuccessRate 0%% never fails")
	}
	if s.MinDevices > wave.Batch.Size && (minDev.ok() || size.ok()) {
		at := minDev
		if !at.ok() {
			at = size
		}
		c.add(Warning, at.node, at.path, "lower success.minDevices or raise batch.size",
			"success.minDevices (%d) is more than batch.size (%d): the first batch's rate is not judged on its own", s.MinDevices, wave.Batch.Size)
	}
	if s.MinSuccessRate == 1 && wave.Batch.Growth > 1 && minRate.ok() {
		c.add(Warning, minRate.node, minRate.path, "allow a few failures (e.g. 99%) or keep batch.growth at 1",
			"a 100%% success gate fails on a single failed device; with batches growing x%g, the large later batches will almost surely trip it", wave.Batch.Growth)
	}
}

// action checks an action mapping (once per node) and resolves it.
func (c *checker) action(a ref) *Action {
	n := deref(a.node)
	if act, done := c.actions[n]; done {
		return act
	}
	c.actions[n] = nil
	tw, dm := a.get("twinUpdate"), a.get("directMethod")
	if tw.ok() == dm.ok() {
		c.add(Error, a.at(), a.path, "keep either twinUpdate or directMethod",
			"action must hold exactly one of twinUpdate and directMethod, found %s", map[bool]string{true: "both", false: "neither"}[tw.ok()])
		return nil
	}
	act := &Action{}
	if tw.ok() {
		act.TwinUpdate = c.twinUpdate(tw)
	} else {
		act.DirectMethod = c.directMethod(dm)
	}
	c.actions[n] = act
	return act
}

func (c *checker) twinUpdate(tw ref) *TwinUpdate {
	t := &TwinUpdate{}
	tags, desired := tw.get("tags"), tw.get("desired")
	if !tags.ok() && !desired.ok() {
		c.add(Error, tw.at(), tw.path, "set tags, desired or both", "twinUpdate changes nothing")
		return t
	}
	t.Tags = c.twinSection(tags, "tags", maxTagsSize)
	t.Desired = c.twinSection(desired, "desired", maxDesiredSize)
	if len(t.Tags) == 0 && len(t.Desired) == 0 {
		c.add(Error, tw.at(), tw.path, "set tags, desired or both", "twinUpdate changes nothing")
	}
	return t
}

// jsonOf converts a node into what encoding/json would decode from its JSON form.
func (c *checker) jsonOf(n *yaml.Node, path string) (any, []byte) {
	v := c.toValue(n, path)
	b, err := json.Marshal(v)
	if err != nil {
		return nil, []byte("null")
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, []byte("null")
	}
	return out, b
}

func (c *checker) directMethod(dm ref) *DirectMethod {
	m := &DirectMethod{Payload: json.RawMessage("null")}
	m.Name, _ = str(dm.get("name"))
	if p := dm.get("payload"); p.ok() {
		_, b := c.jsonOf(p.node, p.path)
		if len(b) > MaxPayload {
			c.add(Error, p.node, p.path, "send a reference (a URI) instead of the data", "payload is %d bytes as JSON; IoT Hub accepts at most %d", len(b), MaxPayload)
		}
		m.Payload = b
	}
	rt := dm.get("responseTimeout")
	m.ResponseTimeout = c.duration(rt, DefaultResponseTimeout)
	if rt.ok() && (m.ResponseTimeout < MinResponseTimeout || m.ResponseTimeout > MaxResponseTimeout) {
		c.add(Error, rt.node, rt.path, "IoT Hub's responseTimeoutInSeconds ranges from 5 to 300", "responseTimeout %v is outside 5s..300s", m.ResponseTimeout)
	}
	c.wholeSeconds(rt, m.ResponseTimeout)
	ct := dm.get("connectTimeout")
	m.ConnectTimeout = c.duration(ct, DefaultConnectTimeout)
	if ct.ok() && (m.ConnectTimeout < 0 || m.ConnectTimeout > MaxConnectTimeout) {
		c.add(Error, ct.node, ct.path, "IoT Hub's connectTimeoutInSeconds ranges from 0 to 300", "connectTimeout %v is outside 0s..300s", m.ConnectTimeout)
	}
	c.wholeSeconds(ct, m.ConnectTimeout)
	if b := deref(dm.get("idempotent").node); b != nil && b.ShortTag() == "!!bool" {
		_ = b.Decode(&m.Idempotent) // not a boolean: the schema reported it
	}
	return m
}

// rollback checks that a direct-method rollout can be undone when onFailure asks for it.
func (c *checker) rollback(root, onFailure ref) {
	rb := root.get("rollback").get("directMethod")
	if rb.ok() {
		c.p.Rollback.DirectMethod = c.directMethod(rb)
	}
	var method, twin *yaml.Node
	for n, a := range c.actions {
		if a == nil {
			continue
		}
		if a.DirectMethod != nil && (method == nil || n.Line < method.Line) {
			method = n
		}
		if a.TwinUpdate != nil {
			twin = n
		}
	}
	switch {
	case method != nil && c.p.OnFailure == RollbackAll && !rb.ok():
		at := onFailure.node
		if at == nil {
			at = method
		}
		c.add(Error, at, "rollback.directMethod", "add rollback.directMethod with the compensating method, or set onFailure: halt",
			"onFailure is rollback, but a direct method cannot be undone without rollback.directMethod")
	case rb.ok() && method == nil && twin != nil:
		c.add(Warning, rb.at(), rb.path, "remove it: twin updates are rolled back by restoring each device's prior values",
			"rollback.directMethod is never called: no wave calls a direct method")
	}
}

var weekdays = map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday, "thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}

// schedule checks and resolves the schedule.
func (c *checker) schedule(s ref) {
	if deref(s.node) == nil || deref(s.node).Kind != yaml.MappingNode {
		return
	}
	sch := &Schedule{}
	c.p.Schedule = sch
	nb := s.get("notBefore")
	if v, ok := str(nb); ok {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			c.add(Error, nb.node, nb.path, "write a timestamp with a zone, such as 2026-12-01T02:00:00Z", "notBefore %q is not an RFC 3339 timestamp", v)
		}
		sch.NotBefore = t
	}
	ws := deref(s.get("windows").node)
	if ws == nil || ws.Kind != yaml.SequenceNode {
		return
	}
	for i, wn := range ws.Content {
		w := ref{node: wn, path: indexPath(s.path+".windows", i)}
		win := Window{Location: time.UTC}
		if days := deref(w.get("days").node); days != nil && days.Kind == yaml.SequenceNode {
			for _, d := range days.Content {
				if wd, ok := weekdays[deref(d).Value]; ok {
					win.Days = append(win.Days, wd)
				}
			}
		}
		start, end := w.get("start"), w.get("end")
		win.Start, _ = clock(start)
		win.End, _ = clock(end)
		if s1, ok1 := clock(start); ok1 {
			if e1, ok2 := clock(end); ok2 && s1 == e1 {
				c.add(Error, end.node, end.path, "a window that ends before it starts spans midnight; for all day, leave out the schedule",
					"window is empty: start and end are both %s", deref(end.node).Value)
			}
		}
		tz := w.get("timeZone")
		if name, ok := str(tz); ok {
			loc, err := time.LoadLocation(name)
			if err != nil || name == "" || strings.EqualFold(name, "local") {
				c.add(Error, tz.node, tz.path, "use an IANA time zone name such as Europe/Berlin or UTC", "unknown time zone %q", name)
			} else {
				win.Location = loc
			}
		}
		sch.Windows = append(sch.Windows, win)
	}
}

// clock parses HH:MM into an offset from midnight.
func clock(r ref) (time.Duration, bool) {
	s, ok := str(r)
	if !ok {
		return 0, false
	}
	t, err := time.Parse("15:04", s)
	if err != nil || len(s) != 5 {
		return 0, false
	}
	return time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute, true
}

// risks adds the warnings for plans that are legal but risky.
func (c *checker) risks(root, onFailure ref, waves ref) {
	p := c.p
	n := deref(waves.node)
	if n == nil || n.Kind != yaml.SequenceNode || len(p.Waves) == 0 {
		return
	}
	wref := func(i int) ref { return ref{node: n.Content[i], path: indexPath(waves.path, i)} }

	// The first wave should be a canary: a restrictive target, or a sample of at most 10%.
	if w := p.Waves[0]; isAll(w.Target) && w.Percent > 10 {
		at := wref(0).get("target")
		if !at.ok() {
			at = wref(0).get("name")
		}
		c.add(Warning, at.node, at.path, "start with a small canary: a target such as tags.ring = 'canary', or percent: 1",
			"the first wave targets every fleet device")
	}

	twin := false
	for i, w := range p.Waves {
		wr := wref(i)
		if w.Action.TwinUpdate != nil {
			twin = true
		}
		if w.Verify == nil && changesFirmware(w.Action) {
			c.add(Warning, wr.get("name").node, wr.path, "add verify (in defaults or the wave) on the reported firmware version",
				"wave %q changes firmware but has no verify", w.Name)
		}
		defaults := root.get("defaults")
		if pr := wr.get("percent"); pr.ok() && w.Percent < 100 && !wr.get("success").ok() && !defaults.get("success").ok() {
			c.add(Warning, pr.node, pr.path, "set success (minSuccessRate, maxFailures) for this wave or in defaults",
				"wave %q samples %g%% of its target without a success gate of its own; only the built-in 95%% gate applies", w.Name, w.Percent)
		}
	}
	if twin && p.OnFailure == Halt {
		c.add(Warning, onFailure.node, onFailure.path, "use onFailure: rollback to restore the prior values on failure",
			"onFailure: halt leaves every device a twin update reached with the new values")
	}
}

// changesFirmware guesses whether an action changes firmware, from its property or method names.
func changesFirmware(a Action) bool {
	fw := func(s string) bool {
		s = strings.ToLower(s)
		return strings.Contains(s, "firmware") || strings.HasPrefix(s, "fw")
	}
	if a.DirectMethod != nil {
		return fw(a.DirectMethod.Name)
	}
	if a.TwinUpdate != nil {
		for _, m := range []map[string]any{a.TwinUpdate.Desired, a.TwinUpdate.Tags} {
			if anyKey(m, fw, 0) {
				return true
			}
		}
	}
	return false
}

func anyKey(m map[string]any, f func(string) bool, depth int) bool {
	if depth > maxTwinDepth {
		return false
	}
	for k, v := range m {
		if f(k) {
			return true
		}
		if sub, ok := v.(map[string]any); ok && anyKey(sub, f, depth+1) {
			return true
		}
	}
	return false
}

// isAll reports whether a condition is the "every device" condition.
func isAll(cond string) bool { return strings.TrimSpace(cond) == "*" }

// waveSets reports waves that can select no device because an earlier wave took everything they
// could select: an earlier full wave with target * or with the very same target.
func (c *checker) waveSets(seq *yaml.Node, path string) {
	for i, w := range c.p.Waves {
		for j := range i {
			e := c.p.Waves[j]
			if e.Percent < 100 || !covers(e, w) {
				continue
			}
			if isAll(e.Target) || strings.TrimSpace(e.Target) == strings.TrimSpace(w.Target) {
				wr := ref{node: seq.Content[i], path: indexPath(path, i)}
				at := wr.get("target")
				if !at.ok() {
					at = wr.get("name")
				}
				c.add(Error, at.node, at.path, "a device is targeted by at most one wave; narrow this target or drop the wave",
					"wave %q selects no devices: wave %q already takes every device its target selects", w.Name, e.Name)
				break
			}
		}
	}
}

// querySizes checks that each wave's composed condition fits the hub's query length.
func (c *checker) querySizes(waves ref) {
	n := deref(waves.node)
	for i := range c.p.Waves {
		cond := query.Format(c.p.Condition(i))
		if l := len(jobQueryPrefix) + len(cond); l > MaxQueryLength {
			wr := ref{node: n.Content[i], path: indexPath(waves.path, i)}
			at := wr.get("target")
			if !at.ok() {
				at = wr.get("name")
			}
			c.add(Error, at.node, at.path, "shorten the fleet and earlier targets, e.g. by tagging devices with their ring",
				"the wave's composed job query is %d characters (fleet AND target AND NOT earlier targets); IoT Hub accepts at most %d", l, MaxQueryLength)
		}
	}
}
