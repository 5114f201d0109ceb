// Package report renders a rollout's per-device outcome report (engine.Report) as the files CI systems
// and people read: JSON as the engine defines it, JUnit XML (a test suite per wave, a test case per
// device) and one self-contained HTML page (the waves on a timeline, per-batch outcome bars, gate
// decisions, a filterable device table). The format comes from the file's extension.
package report
