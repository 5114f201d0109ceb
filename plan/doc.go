// Package plan loads and validates rollout plans: YAML with source positions, checked against the
// embedded JSON Schema and then semantically (conditions, thresholds, twin patches, schedules), with every
// problem reported as a positioned diagnostic. A loaded Plan has each wave's settings resolved.
//
// # Loading
//
// Load takes the plan's bytes and returns every problem at once, sorted by position: YAML syntax,
// schema violations (mapped from the JSON pointer of each failure back to the YAML node, with a
// document path such as waves[2].success.minSuccessRate), unknown keys with "did you mean", and the
// semantic checks below. Lines are 1-based; columns count characters, as YAML does. Inputs are bounded
// before parsing: more than MaxSize bytes, bytes that are not UTF-8 text (binary files, NUL and other
// control characters), an empty document or a second document are refused with a positioned error.
// Aliases are allowed, but their expansion is bounded (an alias bomb is one error, not a hang); YAML
// merge keys (<<) are refused, because defaults is the plan's way of sharing settings.
//
// # Settings and defaults
//
// Rates are written as percentages (98%) and resolved to fractions; durations are Go durations (30s,
// 10m, 2h). A wave may override every key of defaults — timeout, batch, success, bake and verify —
// and inside batch, success and verify it overrides key by key, so `success: {minSuccessRate: 100%}`
// keeps the defaults' maxFailures and minDevices. What neither sets takes the built-in default
// (DefaultTimeout, DefaultBatchSize and so on, which the schema's "default" annotations repeat for
// editors). onFailure defaults to rollback.
//
// A wave may also carry its own action, which replaces the plan's action for that wave entirely (the
// two are not merged: a wave switching from a twin update to a direct method must not inherit half of
// each). After that, every wave must have exactly one action: one of twinUpdate and directMethod.
// When any wave calls a direct method and onFailure is rollback, rollback.directMethod is required,
// because a direct method cannot be undone by restoring twins.
//
// # Checks beyond the schema
//
//   - wave names unique; at most MaxWaves waves; name at most MaxNameLength characters so that JobID
//     fits IoT Hub's 64-character job ids;
//   - thresholds: job timeout above 0 and in whole seconds; direct-method responseTimeout 5s..300s and
//     connectTimeout 0s..300s, in whole seconds; payload at most 128 KB;
//   - conditions (fleet, targets, verify) parse as IoT Hub conditions, "*" meaning every device; a syntax
//     error points at its column inside the YAML string, mapped through quotes, escapes and folding;
//     each wave's composed condition (see Plan.Condition) fits the hub's 8192-character query;
//   - a wave that can select nothing (after an earlier full wave with target "*" or the same target);
//   - twin patches hold only tags and desired, with property names, nesting depth, value types, integer
//     range, string length and section sizes within the hub's twin rules;
//   - schedules: weekdays mon..sun, HH:MM times, a window whose start equals its end is empty (an end
//     before the start spans midnight), IANA time zones (the zone database is compiled in with
//     time/tzdata, so validation does not depend on the machine), notBefore an RFC 3339 timestamp.
//
// Warnings, which leave a plan valid: a first wave that targets every fleet device; a wave changing
// firmware without verify; a percent wave without a success gate of its own; a twin update with
// onFailure: halt; gates that cannot work as written (a 0% rate, minDevices above the batch size, a
// 100% gate with growing batches); arrays in twin patches; a rollback method no wave needs.
//
// # Identity
//
// Plan.Hash is the SHA-256 of the resolved plan's canonical form (see Hash), so a reformatted plan
// keeps its identity and an edited one does not; JobID derives deterministic IoT Hub job ids from it.
package plan
