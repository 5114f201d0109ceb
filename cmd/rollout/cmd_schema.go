package main

import (
	"fmt"

	"github.com/iot-rollout/rollout/schema"
	"github.com/spf13/cobra"
)

func newSchemaCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "print the plan's JSON Schema (for editors and other tools)",
		Long:  "Prints the plan's JSON Schema, exactly as the validator uses it.",
		Example: examples(
			"rollout schema > plan.schema.json",
			"rollout schema | jq '.properties.waves.items.properties | keys'   # the fields a wave takes"),
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("takes no arguments")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := e.stdout.Write(schema.Plan); err != nil {
				fmt.Fprintln(e.stderr, "rollout schema:", err)
				return exitWith(exitInvalid)
			}
			return nil
		},
	}
}
