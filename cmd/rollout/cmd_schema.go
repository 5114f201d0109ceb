package main

import (
	"fmt"

	"github.com/iot-rollout/rollout/schema"
)

func init() {
	commands["schema"] = command{
		summary: "print the plan's JSON Schema (for editors and other tools)",
		run:     runSchema,
	}
}

// runSchema prints the embedded plan schema exactly as the validator uses it.
func runSchema(e *env) int {
	if len(e.args) == 1 && (e.args[0] == "-h" || e.args[0] == "--help") {
		fmt.Fprintln(e.stdout, "usage: rollout schema (takes no arguments)")
		return exitOK
	}
	if len(e.args) > 0 {
		fmt.Fprintln(e.stderr, "usage: rollout schema (takes no arguments)")
		return exitInvalid
	}
	if _, err := e.stdout.Write(schema.Plan); err != nil {
		fmt.Fprintln(e.stderr, "rollout schema:", err)
		return exitInvalid
	}
	return exitOK
}
