package main

import (
	"strings"
)

// hints are the flags a hint repeats so that it can be copied and run as printed: where the state
// lives and, for a command that needs the hub, which emulated fleet stands in for it.
type hints struct {
	state string // " --state DIR", or "" for the default state directory
	hub   string // " --emulate FLEET --state DIR" with --emulate, else state
}

// newHints gives the hints of a run whose state is in dir and whose emulated fleet (if any) is
// emulate.
func newHints(dir, emulate string) hints {
	var h hints
	if dir != "" && dir != ".rollout" {
		h.state = " --state " + shellQuote(dir)
	}
	h.hub = h.state
	if emulate != "" {
		h.hub = emulateArgs(emulate) + h.state
	}
	return h
}

// shellQuote quotes s for a POSIX shell when it holds anything but safe characters.
func shellQuote(s string) string {
	safe := s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@%+,", r))
	}) < 0
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// emulateArgs gives the --emulate flags of emulate: one fleet, or NAME=FLEET per hub, one a line.
func emulateArgs(emulate string) string {
	var b strings.Builder
	for _, v := range strings.Split(emulate, "\n") {
		b.WriteString(" --emulate " + shellQuote(v))
	}
	return b.String()
}
