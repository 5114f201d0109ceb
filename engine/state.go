package engine

import (
	"encoding/json"
	"time"

	"github.com/iot-rollout/rollout/plan"
)

// ActionKind names a wave's action.
type ActionKind string

// The action kinds.
const (
	KindTwinUpdate   ActionKind = "twinUpdate"
	KindDirectMethod ActionKind = "directMethod"
)

// Status is where a rollout, wave or batch stands.
type Status string

// The statuses. A rollout goes pending → running → done, or ends halted or rolledBack; rollingBack is
// recorded while a rollback runs so that it resumes after a crash.
const (
	StatusPending     Status = "pending"
	StatusRunning     Status = "running"
	StatusBaking      Status = "baking"
	StatusRetrying    Status = "retrying" // a batch whose jobs ended retries devices before its gate
	StatusDone        Status = "done"
	StatusFailed      Status = "failed"
	StatusHalted      Status = "halted"
	StatusRollingBack Status = "rollingBack"
	StatusRolledBack  Status = "rolledBack"
)

// State is the small, frequently rewritten part of a rollout's durable record: the rollout, its waves
// and their batches. Device lists, twin snapshots, outcomes and approvals live in their own buckets so
// that a step rewrites only what it changed.
type State struct {
	Name     string `json:"name"`
	PlanHash string `json:"planHash"`
	// PlanParts digests the plan's parts (plan.Parts), so an edit can be said in words.
	PlanParts map[string]string `json:"planParts,omitempty"`
	PlanFile  string            `json:"planFile,omitempty"`
	Hub       string            `json:"hub,omitempty"` // the hub as the last apply named it (Options.HubName)
	Kind      ActionKind        `json:"kind"`          // the first wave's action
	Status    Status            `json:"status"`
	Reason    string            `json:"reason,omitempty"` // why the rollout halted or rolled back
	Created   time.Time         `json:"created"`
	Updated   time.Time         `json:"updated"`
	Waves     []Wave            `json:"waves"`
	Rollback  *Progress         `json:"rollback,omitempty"` // set once a rollback started
	// RollbackMethod is the plan's compensating direct method, kept so that `rollout rollback` needs no
	// plan file.
	RollbackMethod *plan.DirectMethod `json:"rollbackMethod,omitempty"`
	Requested      bool               `json:"rollbackRequested,omitempty"`
	// Waiting is what the rollout last waited for, until a later step moves it on.
	Waiting *Waiting `json:"waiting,omitempty"`
	// Accepted are the halts people accepted (rollout resume --accept), in order; the budget counts
	// from the last one's totals.
	Accepted []Acceptance `json:"accepted,omitempty"`

	// Hubs are the hubs of a plan with hubs and how each is reached, by reference only (the
	// environment variable of a connection string, or a host for Microsoft Entra; never a secret), as
	// the last apply's plan named them: `rollout rollback` reaches them again with no plan file.
	Hubs []HubRef `json:"hubs,omitempty"`
}

// HubRef is one hub of a plan with hubs as the state keeps it (see State.Hubs and plan.Hub).
type HubRef struct {
	Name       string `json:"name"`
	Connection string `json:"connection,omitempty"` // the environment variable holding its connection string
	Host       string `json:"host,omitempty"`       // its host, for Microsoft Entra
	Tier       string `json:"tier,omitempty"`
	Units      int    `json:"units,omitempty"`
}

// HubRefs are the references to the hubs of p (nil for a plan without hubs).
func HubRefs(p *plan.Plan) []HubRef {
	var out []HubRef
	for _, h := range p.Hubs {
		out = append(out, HubRef{Name: h.Name, Connection: h.Connection, Host: h.Host, Tier: h.Tier, Units: h.Units})
	}
	return out
}

// PlanHubs are the hubs st keeps as a plan names them, for reaching them again (nil without hubs).
func (st *State) PlanHubs() []plan.Hub {
	var out []plan.Hub
	for _, h := range st.Hubs {
		out = append(out, plan.Hub{Name: h.Name, Connection: h.Connection, Host: h.Host, Tier: h.Tier, Units: max(h.Units, 1)})
	}
	return out
}

// Waiting is a wait the rollout is in: for an approval, a schedule window, the bake, or verify.
type Waiting struct {
	Reason  string    `json:"reason"` // approval, schedule, bake or verify
	Wave    string    `json:"wave"`
	Until   time.Time `json:"until,omitzero"`    // the bake's end, the window's opening, verify's deadline
	Since   time.Time `json:"since"`             // when the wait began
	MinRate float64   `json:"minRate,omitempty"` // verify: the share of devices that must satisfy it
}

// Wave is one wave's record.
type Wave struct {
	Name        string     `json:"name"`
	Kind        ActionKind `json:"kind,omitempty"` // the wave's action
	Status      Status     `json:"status"`
	Resolved    bool       `json:"resolved"`           // devices resolved and stored under devices/<wave>
	Gated       bool       `json:"approval,omitempty"` // the wave waits for an approval before it starts
	DeviceCount int        `json:"deviceCount"`
	Started     time.Time  `json:"started,omitzero"`
	BakeStart   time.Time  `json:"bakeStart,omitzero"` // the wave's end gate passed
	Done        time.Time  `json:"done,omitzero"`
	VerifyReads int        `json:"verifyReads,omitempty"`
	VerifyRate  float64    `json:"verifyRate,omitempty"`
	VerifyOK    bool       `json:"verifyOK,omitempty"`
	// VerifyMetSince is when verify's current run of reads at its rate began (verify.hold).
	VerifyMetSince time.Time `json:"verifyMetSince,omitzero"`
	Batches        []Batch   `json:"batches,omitempty"`
	Counts         Counts    `json:"counts"`
	// Accepted are the wave's counts when a halt at its gate was accepted: its gates count only the
	// devices after them.
	Accepted Counts `json:"accepted,omitzero"`
	// Patch is what the wave's twin update writes, kept so that a rollback (which needs no plan) can
	// tell a twin someone changed since from one that still holds the rollout's values.
	Patch *plan.TwinUpdate `json:"patch,omitempty"`
}

// Batch is one batch's record: a range of its wave's stored devices and the jobs that carry it.
type Batch struct {
	Start       int    `json:"start"` // index range [Start, End) into the wave's devices
	End         int    `json:"end"`
	Status      Status `json:"status"`
	Snapshotted bool   `json:"snapshotted,omitempty"`
	Jobs        []Job  `json:"jobs"`
	Counts      Counts `json:"counts"`
	RolledBack  bool   `json:"rolledBack,omitempty"`
	// RollbackJobs carry the compensating direct method of a direct-method rollout.
	RollbackJobs []Job `json:"rollbackJobs,omitempty"`
	// JobCount and RollbackJobCount are, in the stored record only, how many job records of each
	// kind the batch has (the jobs are records of their own; see Tx.PutState).
	JobCount         int `json:"jobCount,omitempty"`
	RollbackJobCount int `json:"rollbackJobCount,omitempty"`
	// Retries are the batch's retry attempts so far, in order (the wave's plan retry); Tried is when
	// its last attempt (its jobs, or a retry) ended: the next retry backs off from then.
	Retries []Retry   `json:"retries,omitempty"`
	Tried   time.Time `json:"tried,omitzero"`
}

// Retry is one retry attempt of a batch: jobs over the batch's devices to retry that were connected
// when it started (stored as the attempt's device list, which its jobs' ranges index); the devices
// that were not wait for the next attempt. An attempt with no connected device has no job.
type Retry struct {
	Attempt int       `json:"attempt"` // 1 for the first retry
	Started time.Time `json:"started"`
	Devices int       `json:"devices"` // devices retried
	Waited  int       `json:"waited"`  // devices to retry that were not connected
	Jobs    []Job     `json:"jobs,omitempty"`
	Counts  Counts    `json:"counts"` // the retried devices' outcomes in this attempt
	Ended   bool      `json:"ended,omitempty"`
}

// Job is one IoT Hub job of a batch. Intent is written before the job is created; Created once the hub
// accepted it (or already had it). A job with Intent but not Created may or may not exist on the hub, so
// a resumed run asks the hub by id before creating it.
type Job struct {
	ID        string `json:"id"`
	Start     int    `json:"start"` // index range [Start, End) into the wave's devices
	End       int    `json:"end"`
	Intent    bool   `json:"intent,omitempty"`
	Created   bool   `json:"created,omitempty"`
	Status    string `json:"status,omitempty"` // last job status seen
	Collected bool   `json:"collected,omitempty"`
	Counts    Counts `json:"counts"`
}

// Progress records a rollback: which wave and batch are next to undo, newest first.
type Progress struct {
	Started time.Time `json:"started"`
	Done    bool      `json:"done"`
	Devices int       `json:"devices"` // devices restored or compensated so far
	Failed  int       `json:"failed"`  // devices whose restore or compensation failed
	// Conflicts are devices left alone: someone changed a path the rollout wrote since it wrote it.
	Conflicts int `json:"conflicts,omitempty"`
}

// Counts are device outcomes summed over a job, a batch or a wave.
type Counts struct {
	Targeted    int `json:"targeted"`
	Succeeded   int `json:"succeeded"`
	Failed      int `json:"failed"` // failed, method non-2xx included
	TimedOut    int `json:"timedOut"`
	Unreachable int `json:"unreachable"`
	MethodError int `json:"methodError"` // part of Failed: answered with a non-2xx status
}

// Tally returns c with one more device of outcome o.
func (c Counts) Tally(o Outcome) Counts {
	switch o {
	case Succeeded:
		c.Succeeded++
	case MethodError:
		c.Failed++
		c.MethodError++
	case Failed:
		c.Failed++
	case TimedOut:
		c.TimedOut++
	case Unreachable:
		c.Unreachable++
	}
	return c
}

// Totals sums the outcomes of every wave so far.
func (st *State) Totals() Counts {
	var c Counts
	for _, w := range st.Waves {
		c = c.Add(w.Counts)
	}
	return c
}

// Remove returns c with one device of outcome o less: a retried device is counted by its last
// attempt only.
func (c Counts) Remove(o Outcome) Counts {
	d := Counts{}.Tally(o)
	return Counts{c.Targeted, c.Succeeded - d.Succeeded, c.Failed - d.Failed, c.TimedOut - d.TimedOut,
		c.Unreachable - d.Unreachable, c.MethodError - d.MethodError}
}

// Sub returns c less d: the counts since d was taken.
func (c Counts) Sub(d Counts) Counts {
	return Counts{c.Targeted - d.Targeted, c.Succeeded - d.Succeeded, c.Failed - d.Failed,
		c.TimedOut - d.TimedOut, c.Unreachable - d.Unreachable, c.MethodError - d.MethodError}
}

// Judged is what a wave's gates judge: its counts since an accepted halt at its gate, if any.
func (w *Wave) Judged() Counts { return w.Counts.Sub(w.Accepted) }

// Done is the number of devices with an outcome.
func (c Counts) Done() int { return c.Succeeded + c.Failed + c.TimedOut + c.Unreachable }

// Ended is c for a job that ended: its devices without an outcome were never reached in time.
func (c Counts) Ended() Counts {
	c.TimedOut += c.Targeted - c.Done()
	return c
}

// Add returns c plus d.
func (c Counts) Add(d Counts) Counts {
	return Counts{c.Targeted + d.Targeted, c.Succeeded + d.Succeeded, c.Failed + d.Failed,
		c.TimedOut + d.TimedOut, c.Unreachable + d.Unreachable, c.MethodError + d.MethodError}
}

// Outcome is what happened to one device.
type Outcome string

// The outcomes.
const (
	Succeeded   Outcome = "succeeded"
	Failed      Outcome = "failed"
	TimedOut    Outcome = "timedOut"
	Unreachable Outcome = "unreachable"
	MethodError Outcome = "methodError"
)

// DeviceOutcome is one device's recorded outcome. Twin rollouts record only devices that did not
// succeed; the rest of a batch succeeded.
type DeviceOutcome struct {
	Outcome      Outcome `json:"o"`
	Wave         int     `json:"w"`
	Batch        int     `json:"b"`
	MethodStatus int     `json:"s,omitempty"`
	ErrorCode    string  `json:"e,omitempty"`
	// Attempt is the retry this outcome is from (0: the batch's own job).
	Attempt int `json:"a,omitempty"`
	// Ran is set when an earlier attempt may have run the direct method on the device, so a
	// rollback compensates it whatever its last outcome.
	Ran bool `json:"r,omitempty"`
}

// Prior is one device's twin before the rollout changed it: for each patched path ("tags.a",
// "properties.desired.firmware"), its JSON value, or Absent when the twin had no such property.
type Prior map[string]PriorValue

// PriorValue is a captured value; Absent distinguishes a missing property from JSON null.
type PriorValue struct {
	Absent bool            `json:"absent,omitempty"`
	Value  json.RawMessage `json:"value,omitempty"`
}
