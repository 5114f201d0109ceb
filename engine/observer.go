package engine

import "time"

// EventType names an Event. The JSON output of `rollout apply --output json` is one Event per line; its
// field names are the json tags below.
type EventType string

// The events, in the order a rollout meets them.
const (
	EventStarted         EventType = "started"         // a rollout started or resumed (Waves)
	EventReplanned       EventType = "replanned"       // the plan was edited before any job existed: the rollout starts over with it (Reason: what changed)
	EventWaiting         EventType = "waiting"         // waiting for approval, a schedule window or the bake (Reason, Until)
	EventApproved        EventType = "approved"        // a wave's approval gate was released (By, At, Reason)
	EventAccepted        EventType = "accepted"        // a halt's failures were accepted: the rollout continues (By, At, Reason, Counts.Failed accepted)
	EventWaveStarted     EventType = "waveStarted"     // a wave's devices were resolved (Devices, Batches)
	EventSnapshot        EventType = "snapshot"        // a batch's prior twin values were captured (Devices)
	EventJobCreated      EventType = "jobCreated"      // a job was created (Job, Devices)
	EventJobAttached     EventType = "jobAttached"     // a job that already existed was re-attached (Job)
	EventBatchProgress   EventType = "batchProgress"   // a batch's jobs advanced (Done of Devices, Counts so far)
	EventBatchDone       EventType = "batchDone"       // a batch's outcomes were collected (Counts)
	EventRetry           EventType = "retry"           // a retry attempt of a batch started (Attempt, Devices retried, Waited: not connected)
	EventRetryDone       EventType = "retryDone"       // a retry attempt ended (Attempt, Counts: the batch's, each device by its last attempt)
	EventGatePassed      EventType = "gatePassed"      // the success gate passed after a batch or at wave end (Counts, Reason)
	EventGateFailed      EventType = "gateFailed"      // the success gate or verify failed (Reason)
	EventVerify          EventType = "verify"          // a verify read (Rate, Done of Devices)
	EventWaveDone        EventType = "waveDone"        // a wave passed its gates, bake and verify
	EventHalted          EventType = "halted"          // the rollout halted (Reason)
	EventRollbackStarted EventType = "rollbackStarted" // a rollback started or resumed (Reason)
	EventRollbackBatch   EventType = "rollbackBatch"   // a batch was rolled back (Devices restored, Counts.Failed restores that failed)
	EventRolledBack      EventType = "rolledBack"      // the rollback finished
	EventDone            EventType = "done"            // every wave is done
	EventStopped         EventType = "stopped"         // stopped at a safe point on request; run again to continue
)

// Event is one thing that happened in a rollout. Wave is -1 for events of the whole rollout.
type Event struct {
	Type     EventType `json:"type"`
	Time     time.Time `json:"time"`
	Rollout  string    `json:"rollout"`
	Wave     int       `json:"wave"`
	WaveName string    `json:"waveName,omitempty"`
	Waves    int       `json:"waves,omitempty"`
	Batch    int       `json:"batch"`
	Batches  int       `json:"batches,omitempty"`
	Job      string    `json:"job,omitempty"`
	Devices  int       `json:"devices,omitempty"`
	Done     int       `json:"done,omitempty"`
	Attempt  int       `json:"attempt,omitempty"` // a retry attempt, from 1
	Waited   int       `json:"waited,omitempty"`  // devices a retry left for its next attempt: not connected
	Counts   *Counts   `json:"counts,omitempty"`
	Rate     float64   `json:"rate,omitempty"`
	Until    time.Time `json:"until,omitzero"`
	Reason   string    `json:"reason,omitempty"`
	// Conflicts counts devices a rollback left alone because someone changed them since the rollout.
	Conflicts int       `json:"conflicts,omitempty"`
	By        string    `json:"by,omitempty"` // who approved
	At        time.Time `json:"at,omitzero"`  // when they approved
}

// Observer receives a rollout's events. Event is called from the engine's goroutine, in order, and
// should return quickly.
type Observer interface {
	Event(Event)
}

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(Event)

// Event calls f.
func (f ObserverFunc) Event(e Event) { f(e) }
