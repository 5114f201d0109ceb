// Package engine runs a rollout plan against an IoT Hub: it resolves each wave's devices once, splits
// them into batches that run as IoT Hub jobs with deterministic ids, judges the success gate after every
// batch and at wave end, waits for approvals, schedule windows and bake time while polling the verify
// condition, and halts or rolls back when a gate fails.
//
// Every step is crash-safe. The durable state (a bbolt file per rollout under the state directory)
// records intent before every hub call that changes something, the devices of every wave and batch,
// each device's prior twin values and each batch's outcomes. A run that was killed at any point is
// continued by running it again: existing jobs are re-attached by id and never re-created, so no device
// receives a direct method twice.
//
// The engine never prints: it reports through an Observer.
//
// # Layout
//
// A decision is a pure function of the plan, the state, observations and the time, with the clock
// passed in: the next step (Next, which also names what to prepare while a batch runs, PrepareAhead),
// batch sizes, sampling, gates (Judge, JudgeWave, JudgeVerify), schedule windows and which jobs to
// start live in decide.go, verify's in decide_verify.go; approval rules in approve.go; how a job's device records become outcomes
// (jobOutcomes, classify) in outcome.go. A transition is a named method on State in transition.go,
// the only place a rollout's, wave's or batch's status changes; it returns the events it causes. I/O
// sits around them, a file per concern: runner.go has the public API and the loop that asks Next and
// runs the step ("transition, save, emit"); resolve.go resolves waves (the resolver apply and the
// preview share), batch.go runs a batch, job.go creates jobs intent-first and polls them (one poll for
// forward and compensating jobs), retry.go retries a batch's devices before its gate (NextRetry
// decides when), outcome.go reads outcomes, prior.go captures and restores twin
// values, gate.go judges gates and verify, rollback.go undoes batches, ahead.go runs a preparation in
// the background, and state.go and lock.go are the durable state. preview*.go is `rollout plan`:
// the state it finds, counts, the twin diff, the estimate and the findings.
package engine
