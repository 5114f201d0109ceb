package plan

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/iot-rollout/rollout/query"
)

// Plan is a validated rollout plan with every wave's settings resolved: defaults merged into each wave,
// rates as fractions, durations parsed. Load returns a Plan only when it has no errors.
type Plan struct {
	Version     int
	Name        string // [a-z0-9-]{1,40}; names the rollout, its state and its job ids
	Description string
	Fleet       string // condition ANDed into every wave; "" when absent
	// Hubs are the plan's IoT hubs, sorted by name; nil for a plan that runs on the one hub the
	// command line gives.
	Hubs      []Hub
	Waves     []Wave
	OnFailure FailurePolicy
	Budget    *Budget // nil: none
	Rollback  Rollback
	Schedule  *Schedule // nil when the plan has none

	// Hash is the hex SHA-256 of the plan's canonical form (the resolved plan marshalled as JSON, see
	// the Hash function), so reformatting or reordering keys does not change it but any semantic edit
	// does. JobID uses its first 8 hex digits.
	Hash string
	// File is the path the plan was loaded from ("-" for standard input).
	File string

	// conditions caches each wave's composed condition (see Condition), set by Load.
	conditions []query.Expr
}

// FailurePolicy says what a failing gate does.
type FailurePolicy string

// The failure policies.
const (
	Halt             FailurePolicy = "halt"
	RollbackAll      FailurePolicy = "rollback"
	DefaultOnFailure               = RollbackAll
)

// Wave is one stage of the rollout, with the plan's defaults merged in.
type Wave struct {
	Name string
	// Hubs names the plan's hubs the wave runs on, sorted: the wave's own list, else every hub of the
	// plan; nil when the plan has no hubs. Left out of the plan hash when nil.
	Hubs     []string `json:",omitempty"`
	Target   string   // condition as written; "*" selects every fleet device
	Percent  float64  // 0 < Percent <= 100 (written 50 or 50%); 100 when the wave takes all its target selects
	Approval bool     // the wave waits for `rollout approve`
	// AllowEmpty lets the wave select no device; otherwise an empty wave halts the rollout before any
	// later wave, since an empty canary would gate nothing. Left out of the plan hash when false, so
	// plans written before it keep their hash (and their rollouts).
	AllowEmpty bool `json:",omitempty"`
	Action     Action
	Timeout    time.Duration // maxExecutionTimeInSeconds of each job
	Batch      Batch
	Success    Success
	Bake       time.Duration // 0: no bake
	Verify     *Verify       // nil: no verify
	// Retry retries the devices of each batch whose outcome it names; nil: no retries. Left out of
	// the plan hash when nil.
	Retry *Retry `json:",omitempty"`
}

// Hub is one of a plan's IoT hubs. It is connected by reference only: exactly one of Connection (the
// name of an environment variable holding a SAS connection string) and Host (Microsoft Entra) is set;
// the secret itself is never in the plan.
type Hub struct {
	Name       string // [a-z][a-z0-9-]{0,19}; qualifies its devices' ids (see HubSeparator)
	Connection string // the environment variable of "connection: env:VAR"; "" when Host is set
	Host       string // the hub's host name for Microsoft Entra; "" when Connection is set
	Tier       string // F1, S1, S2, S3 or unlimited; "" when the plan leaves it to the hub or the flags
	Units      int    // purchased units; 1 when not given
}

// HubSeparator joins a hub's name and a device id into the device's id in a plan with hubs, as in
// "eu/thermostat-0001". IoT Hub device ids cannot hold '/' (nor can hub names here), so the first
// '/' always ends the hub's name.
const HubSeparator = "/"

// QualifyID is the id of device id of hub in a plan with hubs.
func QualifyID(hub, id string) string { return hub + HubSeparator + id }

// SplitID splits a qualified device id into its hub and the hub's own id; ok is false when id has no
// hub.
func SplitID(id string) (hub, device string, ok bool) {
	return strings.Cut(id, HubSeparator)
}

// HubNames lists the names of p's hubs, sorted; nil when p has none.
func (p *Plan) HubNames() []string {
	var out []string
	for _, h := range p.Hubs {
		out = append(out, h.Name)
	}
	return out
}

// Retry says how a wave retries devices: a batch's devices whose outcome is one of On are tried
// again, Attempts more times at most, each attempt over those of them connected at its start.
type Retry struct {
	Attempts int           // further tries after the first, at least 1
	Backoff  time.Duration // before the first retry; doubles each time, capped by Within
	Within   time.Duration // no retry starts after the wave is this old
	On       []string      // outcome classes retried: unreachable, timedOut, methodError (see RetryOn)
}

// The outcome classes a retry may name.
const (
	RetryUnreachable = "unreachable" // the device was not online: the method never ran
	RetryTimedOut    = "timedOut"    // not done in time: a direct method may have run
	RetryMethodError = "methodError" // the device answered a direct method with a non-2xx status
)

// Retries reports whether r retries devices of outcome class class.
func (r *Retry) Retries(class string) bool {
	return r != nil && slices.Contains(r.On, class)
}

// Action is the change a wave applies: exactly one of TwinUpdate and DirectMethod is set.
type Action struct {
	TwinUpdate   *TwinUpdate
	DirectMethod *DirectMethod
}

// TwinUpdate is a twin patch: tags and desired properties, JSON objects as decoded by encoding/json.
type TwinUpdate struct {
	Tags    map[string]any
	Desired map[string]any
}

// DirectMethod is a direct-method call.
type DirectMethod struct {
	Name            string
	Payload         json.RawMessage // JSON; "null" when the plan gives none
	ResponseTimeout time.Duration   // 5s..300s; default 30s
	ConnectTimeout  time.Duration   // 0..300s; default 0
	// Idempotent declares that running the method twice on a device is harmless, which retrying
	// timed-out devices needs (a timed-out method may have run). Left out of the plan hash when false.
	Idempotent bool `json:",omitempty"`
}

// Batch splits a wave's devices into jobs: sizes Size, Size*Growth, Size*Growth², ...
type Batch struct {
	Size   int
	Growth float64 // >= 1; 1 keeps every batch the same size
}

// Budget is an error budget over the whole rollout, judged after each batch.
type Budget struct {
	MaxFailures    int     `json:",omitempty"` // failed + timed out over every wave; -1 when unlimited
	MaxFailureRate float64 `json:",omitempty"` // of the devices targeted so far; 0 when unset
	RateSet        bool    `json:",omitempty"` // MaxFailureRate was given (0% is a rate too)
	MinDevices     int     `json:",omitempty"` // no rate is judged on fewer devices
}

// Success is the gate judged after each batch and at wave end.
type Success struct {
	MinSuccessRate float64 // fraction 0..1 of succeeded / targeted
	MaxFailures    int     // failed + timed out; -1 when unlimited
	MinDevices     int     // no rate is judged on fewer devices
	// MaxUnreachable bounds the devices left unreachable, apart from failures; nil: no bound (they
	// only lower the success rate). Left out of the plan hash when nil.
	MaxUnreachable *Limit `json:",omitempty"`
}

// Limit is a bound written as a count (5) or as a share of the devices judged (10%).
type Limit struct {
	Count int     `json:",omitempty"`
	Share float64 `json:",omitempty"` // fraction 0..1, when written as a percentage
	Ratio bool    `json:",omitempty"` // the bound is Share, not Count
}

// Exceeded reports whether n of total devices pass the limit.
func (l Limit) Exceeded(n, total int) bool {
	if l.Ratio {
		return total > 0 && float64(n)/float64(total) > l.Share+1e-9
	}
	return n > l.Count
}

// String writes the limit as a plan writes it.
func (l Limit) String() string {
	if l.Ratio {
		return FormatRate(l.Share)
	}
	return strconv.Itoa(l.Count)
}

// Verify is the health check polled during bake over the wave's devices.
type Verify struct {
	Condition string
	MinRate   float64 // fraction 0..1
	Within    time.Duration
	// Hold is how long the rate must stay reached once it is (0: reaching it once passes). Left out of
	// the plan hash when 0.
	Hold time.Duration `json:",omitempty"`
}

// Rollback says how a failed rollout is undone.
type Rollback struct {
	DirectMethod *DirectMethod // the compensating call for direct-method rollouts; nil for twin updates
}

// Schedule restricts when waves may start.
type Schedule struct {
	NotBefore time.Time // zero when absent
	Windows   []Window
}

// Window is a recurring time range on given weekdays in a time zone. End before Start spans midnight.
type Window struct {
	Days     []time.Weekday
	Start    time.Duration // offset from local midnight
	End      time.Duration
	Location *time.Location
}

// FormatRate writes a rate given as a fraction the way plans write rates: 0.98 as "98%", 0.995 as
// "99.5%", to two decimals of a percent.
func FormatRate(f float64) string {
	s := strconv.FormatFloat(f*100, 'f', 2, 64)
	return strings.TrimSuffix(strings.TrimRight(s, "0"), ".") + "%"
}
