package main

import (
	"context"
	"fmt"

	"github.com/iot-rollout/rollout/engine"
	"github.com/iot-rollout/rollout/plan"
	"github.com/spf13/cobra"
)

// applyOptions is what `rollout apply` was asked to do.
type applyOptions struct {
	runFlags
	file string
}

func newApplyCmd(e *env) *cobra.Command {
	o := &applyOptions{runFlags: runFlags{hubFlags: hubFlags{keepHub: true}}}
	cmd := &cobra.Command{
		Use:   "apply [flags] PLAN",
		Short: "run a plan against the hub (--no-wait for cron, --emulate FLEET for the embedded hub)",
		Long: "Runs a plan: each wave becomes IoT Hub jobs in batches, gated by its success thresholds, bake and\n" +
			"verify. A failing wave halts the rollout or rolls back what was applied. PLAN - reads standard input.\n" +
			"The state is written before every hub call, so a run stopped by Ctrl-C or a crash continues when run again.",
		Example: examples(
			"rollout apply --emulate testdata/fleets/demo.yaml plans/demo/demo.yaml --report report.html",
			"IOTHUB_CONNECTION_STRING=... rollout apply --tier S2 --state .rollout plan.yaml",
			"rollout apply --hub contoso.azure-devices.net --no-wait --output json plan.yaml   # from cron"),
		Args: exactArgs(1, "plan"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.file = args[0]
			if err := o.check(); err != nil {
				return &usageError{err}
			}
			return exitWith(runApply(e, o))
		},
	}
	o.bind(cmd.Flags(), e, true)
	return cmd
}

func runApply(e *env, o *applyOptions) int {
	data, err := readPlan(e, o.file)
	if err != nil {
		fmt.Fprintln(e.stderr, "rollout apply:", err)
		return exitInvalid
	}
	p := loadPlan(e, "apply", o.file, data)
	if p == nil {
		return exitInvalid
	}
	o.plan = p
	dir, temp, cleanup, err := o.stateDir()
	if err != nil {
		fmt.Fprintln(e.stderr, "rollout apply:", err)
		return exitHub
	}
	defer cleanup()
	ref := stateRef{dir: dir, name: p.Name, temp: temp}
	return o.drive(e, "apply", ref, func(ctx context.Context, opts engine.Options) (*engine.Result, error) {
		return engine.Apply(ctx, p, opts)
	})
}

// exactArgs accepts exactly n positional arguments, each a what ("give exactly one plan").
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) == n {
			return nil
		}
		count := map[int]string{1: "one", 2: "two"}[n]
		if count == "" {
			count = fmt.Sprint(n)
		}
		return usagef("give exactly %s %s", count, what)
	}
}

// readPlan reads the plan in file, or standard input for "-".
func readPlan(e *env, file string) ([]byte, error) {
	if file == "-" {
		return plan.Read(e.stdin)
	}
	return plan.ReadFile(file)
}

// loadPlan loads the plan read from file for the command name. Its diagnostics go to standard error
// first, rendered as `rollout validate` renders them (source line, caret, path and hint): the
// warnings of a valid plan too, before anything runs. An invalid plan gives nil, after a pointer to
// `rollout validate`.
func loadPlan(e *env, name, file string, data []byte) *plan.Plan {
	p, diags := plan.Load(file, data)
	// The source is at hand: standard input cannot be read again, and the file may have changed.
	printDiagnosticsWith(e, diags, map[string][]byte{file: data})
	if diags.HasErrors() || p == nil {
		fmt.Fprintf(e.stderr, "rollout %s: the plan is invalid; `rollout validate` shows the details\n", name)
		return nil
	}
	return p
}
