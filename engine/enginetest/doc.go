// Package enginetest wires the engine to an in-process emulator for tests: a hub over loopback HTTP
// with real SAS authentication, plans from YAML text, and a fake clock.
package enginetest
