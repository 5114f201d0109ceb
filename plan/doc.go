// Package plan loads and validates rollout plans: YAML with source positions, checked against the
// embedded JSON Schema and then semantically (conditions, thresholds, twin patches, schedules), with every
// problem reported as a positioned diagnostic. A loaded Plan has each wave's settings resolved.
package plan
