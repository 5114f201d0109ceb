package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

// reportOptions is what `rollout report` was asked to write.
type reportOptions struct {
	dir  string
	name string
	out  string
}

func newReportCmd(e *env) *cobra.Command {
	o := &reportOptions{}
	cmd := &cobra.Command{
		Use:   "report [flags] NAME --out FILE",
		Short: "write a rollout's per-device report from its state: JSON, JUnit XML or HTML",
		Long: "Writes the per-device outcome report of rollout NAME from its state alone, as `apply --report` does,\n" +
			"in the format FILE's extension names: .json, .xml (JUnit: a test suite per wave, a test case per\n" +
			"device) or .html (one self-contained page: the waves on a timeline, per-batch outcome bars, gate\n" +
			"decisions, a filterable device table). Exit 0; 1 for bad usage or an unknown rollout; 4 when the\n" +
			"state cannot be read or the file written.",
		Example: examples(
			"rollout report thermostat-fw-2-4-0 --out report.html",
			"rollout report thermostat-fw-2-4-0 --out junit.xml   # for the CI's test results view",
			"rollout report --state /var/lib/rollout thermostat-fw-2-4-0 --out outcomes.json"),
		Args:              exactArgs(1, "rollout name"),
		ValidArgsFunction: completeRollouts(e),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.out == "" {
				return usagef("--out is required: the file to write, .json, .xml or .html")
			}
			if err := checkReportPath(o.out); err != nil {
				return usagef("--out: %v", err)
			}
			o.name = args[0]
			return exitWith(runReport(e, o))
		},
	}
	stateFlag(cmd.Flags(), e, &o.dir)
	cmd.Flags().StringVar(&o.out, "out", "", "the file to write; its extension (.json, .xml, .html) names the format (required)")
	return cmd
}

func runReport(e *env, o *reportOptions) int {
	store, ok := existingStore(e, "report", o.dir, o.name)
	if !ok {
		return exitInvalid
	}
	if err := writeReport(store, o.out, time.Now()); err != nil {
		fmt.Fprintln(e.stderr, "rollout report:", err)
		return exitHub
	}
	fmt.Fprintf(e.stdout, "wrote the report of rollout %s to %s\n", o.name, o.out)
	return exitOK
}
