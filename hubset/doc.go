// Package hubset runs one rollout over several IoT hubs: a Set is an engine.Hub made of named hubs,
// so the engine stays a single-hub state machine and a wave over several hubs is one wave, judged by
// one set of gates, halted or rolled back as one.
//
// # Device ids
//
// In a plan with hubs every device id the engine sees is qualified with its hub, "eu/thermostat-0001"
// (plan.QualifyID; IoT Hub device ids cannot hold '/', so the first '/' ends the hub's name). The
// state, status, the report and the events therefore carry each device's hub with no change to their
// format. A plan without hubs uses a plain *hubapi.Client and plain ids, exactly as before.
//
// # Routing
//
// GetTwin and UpdateTwin go to the device's hub. Query parses the query (package query): a
// `deviceId IN [...]` of qualified ids at the top of the WHERE condition (the form the engine builds,
// engine.InCondition) is split by hub, and each hub is asked about its own ids only; any other query
// runs on every hub of the Set's view. The hubs are asked concurrently; their rows come back with
// qualified deviceId fields, aggregates (COUNT, GROUP BY) summed over the hubs, and TOP n cut to n.
//
// # Jobs
//
// CreateJob creates the job's part on every hub that has devices in its condition, concurrently, with
// the same deterministic id (ids stay unique per hub); each hub's client paces itself to its own
// quotas. GetJob asks every hub of the view and sums the parts it finds (a hub that answers NotFound
// has no part); the job is running while any part runs, and failed or cancelled when any part ended
// so. DeviceJobs merges the parts' per-device records, qualified.
//
// A lookup by id cannot tell a job whose part on one hub is missing (the run that created the other
// part crashed) from a job that has no part there, so a Set reports PartedJobs: after a crash the
// engine re-creates such a job instead of looking it up, and every part that exists answers
// AlreadyExists (IoT Hub refuses a second job with an id, so no device is run twice) while the
// missing parts are created. CreateJob fails with AlreadyExists only when every part existed.
//
// # Pacing
//
// Each hub's client paces itself to that hub's quotas. The engine sizes its work to Quotas, which
// combines them: an engine job makes a part on every hub, so the concurrent jobs, the job operations
// per minute, the queries per minute, the page size and the query length are the smallest of the
// hubs'; the parts run side by side, so the job device operations (and twin reads and updates) per
// second are the sum. A wave over two S3 hubs of 10 units thus ends in about the time one hub takes
// for its half (see BENCHMARKS.md).
//
// A wave's `hubs:` restricts it: For returns the view of a subset of the hubs, which the engine uses to
// resolve the wave's devices.
//
// # Errors
//
// An error of one hub is a *HubError naming it, the hub's own error kept for errors.As; errors of
// several hubs at once are joined. A hub that cannot be reached thus fails the call that needed it
// (after its client's bounded retries) with the hub's name, and the caller can say which hub to wait
// for before running again.
package hubset
