package plan

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/iot-rollout/rollout/query"
)

// MaxNameLength is the longest plan name. Job ids (see JobID) are at most 64 characters and spend 24
// of them on the hash, wave, batch and part, leaving 40 for the name.
const MaxNameLength = 40

// resolve finishes a checked plan: it stamps the canonical hash and composes each wave's condition
// once, for the callers that ask for it per query.
func (l *loader) resolve(p *Plan) *Plan {
	p.Hash = Hash(p)
	p.conditions = make([]query.Expr, len(p.Waves))
	for i := range p.Waves {
		p.conditions[i] = p.compose(i)
	}
	return p
}

// Hash returns the hex SHA-256 of p's canonical form: the resolved plan (defaults merged, rates as
// fractions, durations in nanoseconds, time zones by name, JSON objects with sorted keys) marshalled as
// JSON. Reformatting the YAML, reordering keys, moving a value between defaults and a wave, or
// writing a default out explicitly leave the hash unchanged; any edit that changes what the rollout
// does changes it. Description and File are left out: they do not change what the rollout does.
func Hash(p *Plan) string {
	return digest(canonical(p))
}

// canonPlan is a plan's canonical form, which Hash digests.
type canonPlan struct {
	Version   int
	Name      string
	Fleet     string
	Hubs      []string `json:",omitempty"` // the hubs' names: how each is reached is not what the rollout does
	Waves     []Wave
	OnFailure FailurePolicy
	Rollback  Rollback
	Schedule  *canonSchedule
	Budget    *Budget `json:",omitempty"` // left out when absent, so plans without one keep their hash
}

type canonWindow struct {
	Days       []time.Weekday
	Start, End time.Duration
	Zone       string
}

type canonSchedule struct {
	NotBefore string
	Windows   []canonWindow
}

func canonical(p *Plan) canonPlan {
	canon := canonPlan{p.Version, p.Name, p.Fleet, p.HubNames(), p.Waves, p.OnFailure, p.Rollback, nil, p.Budget}
	if s := p.Schedule; s != nil {
		cs := &canonSchedule{}
		if !s.NotBefore.IsZero() {
			cs.NotBefore = s.NotBefore.UTC().Format(time.RFC3339Nano)
		}
		for _, w := range s.Windows {
			zone := "UTC"
			if w.Location != nil {
				zone = w.Location.String()
			}
			cs.Windows = append(cs.Windows, canonWindow{w.Days, w.Start, w.End, zone})
		}
		canon.Schedule = cs
	}
	return canon
}

// digest is the hex SHA-256 of v's JSON.
func digest(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// Only a payload that is not JSON can fail here, and Load never produces one; hash its
		// description instead so the result stays deterministic.
		b = fmt.Appendf(nil, "%#v", v)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Parts digests the parts of p's canonical form apart, keyed by what a person calls them ("fleet",
// "onFailure", "rollback", "schedule", "wave order", "wave NAME"), so that Changes can say which parts
// of a plan an edit touched.
func Parts(p *Plan) map[string]string {
	c := canonical(p)
	parts := map[string]string{"fleet": digest(c.Fleet), "onFailure": digest(c.OnFailure),
		"rollback": digest(c.Rollback), "schedule": digest(c.Schedule)}
	var order []string
	for _, w := range c.Waves {
		parts["wave "+w.Name] = digest(w)
		order = append(order, w.Name)
	}
	parts["wave order"] = digest(order)
	return parts
}

// Changes lists the parts (see Parts) that differ between was and now, sorted: "wave eu changed",
// "wave us added", "schedule changed".
func Changes(was, now map[string]string) []string {
	var out []string
	for k, v := range now {
		switch w, ok := was[k]; {
		case !ok:
			out = append(out, k+" added")
		case w != v:
			out = append(out, k+" changed")
		}
	}
	for k := range was {
		if _, ok := now[k]; !ok {
			out = append(out, k+" removed")
		}
	}
	sort.Strings(out)
	return out
}

// JobID returns the IoT Hub job id for a batch of a wave: the plan name, the first 8 hex digits of
// the plan hash, the wave index (2 digits), the batch index (3 digits) and, when part > 0, a part
// number, as in "thermostat-fw-2-4-0-1a2b3c4d-w00-b000" or "...-w03-b012-p2". Indexes are 0-based as
// given. With a name of at most 40 characters, waves < 100, batches < 1000 and parts < 10000 the id
// fits IoT Hub's 64 characters of letters, digits and '-'; larger indexes widen their field. The id is
// deterministic, so a re-run after a crash finds the jobs it already created.
func JobID(p *Plan, wave, batch, part int) string {
	return StageJobID(p.Name, p.Hash, 'w', wave, batch, part)
}

// StageJobID is JobID for the rollout named name with plan hash planHash, with stage naming what the
// job does: 'w' for a wave's forward jobs, 'r' for the jobs that roll a batch back.
func StageJobID(name, planHash string, stage rune, wave, batch, part int) string {
	h := planHash
	if len(h) > 8 {
		h = h[:8]
	}
	id := fmt.Sprintf("%s-%s-%c%02d-b%03d", name, h, stage, wave, batch)
	if part > 0 {
		id += fmt.Sprintf("-p%d", part)
	}
	return id
}

// Condition returns the IoT Hub condition selecting wave's devices: the fleet AND the wave's target AND
// NOT (any earlier full wave's target), with "*" parts dropped. The fleet is not repeated inside the
// NOT: for a device the fleet selects, NOT (fleet AND t) and NOT t agree, and the query stays shorter.
//
// The NOT is taken over query.Definite of the earlier targets, because under IoT Hub's three-valued
// logic NOT over an absent property is undefined: a plain `NOT (tags.ring = 'canary')` would leave
// every device without tags.ring out of the later wave, and `target: "*"` would not mean "every fleet
// device no earlier wave took". With the guard a device lacking the property is selected.
//
// Two limits a caller must know. Earlier waves that took a percent sample (Percent < 100) are not
// excluded, because a condition cannot name a sample: the engine subtracts the devices those waves
// stored. And a device whose property holds a value of another type than an earlier target compares
// it with (tags.ring = 5 against 'canary') stays undefined and is selected by neither; the engine
// resolves each wave's devices once and stores them, subtracting every earlier wave's devices, so no
// device is ever taken twice.
//
// Condition returns query.All{} when nothing restricts the wave. It panics when wave is out of range or
// a condition does not parse, which cannot happen for a plan returned by Load.
func (p *Plan) Condition(wave int) query.Expr {
	if len(p.conditions) == len(p.Waves) {
		return p.conditions[wave]
	}
	return p.compose(wave)
}

// ConditionOn returns the condition selecting wave's devices on hub, one of the wave's hubs: as
// Condition, except that the earlier waves excluded are those that ran on hub, so that a wave on eu
// alone takes nothing from a later wave's devices on us. In a plan without hubs (hub "") it is
// Condition.
func (p *Plan) ConditionOn(wave int, hub string) query.Expr {
	if hub == "" {
		return p.Condition(wave)
	}
	return p.composeWith(wave, func(e Wave) bool { return slices.Contains(e.Hubs, hub) })
}

// compose builds wave's condition (see Condition): the earlier waves excluded are those that ran on
// every hub the wave runs on.
func (p *Plan) compose(wave int) query.Expr {
	w := p.Waves[wave]
	return p.composeWith(wave, func(e Wave) bool { return covers(e, w) })
}

// composeWith builds wave's condition excluding the earlier full waves that excluded accepts.
func (p *Plan) composeWith(wave int, excluded func(Wave) bool) query.Expr {
	parse := func(s string) query.Expr {
		if isAll(s) || s == "" {
			return query.All{}
		}
		e, err := query.ParseCondition(s)
		if err != nil {
			panic(fmt.Sprintf("plan: condition %q does not parse: %v", s, err))
		}
		return e
	}
	w := p.Waves[wave]
	parts := []query.Expr{parse(p.Fleet), parse(w.Target)}
	var earlier []query.Expr
	for _, e := range p.Waves[:wave] {
		if e.Percent >= 100 && !isAll(e.Target) && excluded(e) {
			earlier = append(earlier, parse(e.Target))
		}
	}
	if len(earlier) > 0 {
		parts = append(parts, query.Not(query.Definite(query.Or(earlier...))))
	}
	return query.And(parts...)
}
