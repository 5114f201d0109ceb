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
// The engine never prints: it reports through an Observer. Decisions (batch sizes, sampling, gates,
// schedule windows, the next step) are pure functions in decide.go with the clock passed in.
package engine
