package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// env is what every command gets from Main: its standard streams and the process environment.
// Commands never touch os.Stdout or os.Args themselves, so each one runs in-process in tests.
type env struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
}

// Main runs rollout with args (without the program name) and returns the process exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return mainEnv(args, stdin, stdout, stderr, osGetenv)
}

func mainEnv(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	return mainEnvContext(context.Background(), args, stdin, stdout, stderr, getenv)
}

// mainEnvContext is mainEnv whose long-running commands (rollout emulator) also stop when ctx ends,
// as on Ctrl-C.
func mainEnvContext(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv}
	root := newRoot(e)
	if len(args) == 0 {
		// A bare `rollout` is a usage error: it shows what there is to run, and fails a script that
		// forgot its command.
		_ = root.Usage()
		return exitInvalid
	}
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	return exitFor(e, cmd, err)
}

// newRoot builds the command tree for one run; the options each command parses into are its own, so
// runs in one process never share flag values.
func newRoot(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:   "rollout",
		Short: "staged, gated rollouts of twin updates and direct methods over Azure IoT Hub fleets",
		Long: "rollout runs a YAML plan of staged waves over an Azure IoT Hub fleet: each wave becomes IoT Hub jobs,\n" +
			"gated by success thresholds and health checks; a failing wave halts the rollout or rolls it back.\n" +
			"It embeds an IoT Hub emulator, so every plan can be rehearsed without a cloud account.",
		Example: examples(
			"rollout validate plans/*.yaml",
			"rollout apply --emulate testdata/fleets/demo.yaml plans/demo/demo.yaml",
			"rollout status --state .rollout"),
		Version:       buildVersion(readBuildInfo).short(),
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetIn(e.stdin)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	root.SetVersionTemplate("rollout {{.Version}}\n")
	// The root's usage ends with the exit codes; a command's own help says which of them it uses.
	root.SetUsageTemplate(root.UsageTemplate() + "{{if not .HasParent}}\n" + exitCodeTable + "\n{{end}}")
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return &usageError{err} })
	root.AddCommand(
		newValidateCmd(e), newPlanCmd(e), newApplyCmd(e), newStatusCmd(e), newApproveCmd(e),
		newControlCmd(e, "pause"), newControlCmd(e, "resume"), newControlCmd(e, "promote"),
		newRollbackCmd(e), newReportCmd(e), newUnlockCmd(e), newStateCmd(e), newSchemaCmd(e), newEmulatorCmd(e),
		newCompletionCmd(e), newVersionCmd(e))
	return root
}

// examples formats a command's examples for its help, one command line each, indented as cobra
// indents its other sections.
func examples(lines ...string) string {
	return "  " + strings.Join(lines, "\n  ")
}

// usageError is a command line that does not say what to run: exit 1, with the command's usage line.
type usageError struct{ err error }

func (u *usageError) Error() string { return u.err.Error() }
func (u *usageError) Unwrap() error { return u.err }

// usagef is a usageError with a message of its own.
func usagef(format string, args ...any) error { return &usageError{fmt.Errorf(format, args...)} }

// exitError ends a command with code after the command has said why.
type exitError struct{ code int }

func (x *exitError) Error() string { return fmt.Sprintf("exit %d", x.code) }

// exitWith turns a command's exit code into the error its RunE returns: nil for exitOK.
func exitWith(code int) error {
	if code == exitOK {
		return nil
	}
	return &exitError{code}
}

// exitFor turns the outcome of a command into the process exit code. A command that reported its own
// failure returns an exitError; any other error is a usage error, said here with the usage line of
// the command it concerns.
func exitFor(e *env, cmd *cobra.Command, err error) int {
	var x *exitError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &x):
		return x.code
	}
	name := "rollout"
	if cmd != nil {
		name = cmd.CommandPath()
	}
	fmt.Fprintf(e.stderr, "%s: %v\n", name, err)
	if cmd != nil {
		fmt.Fprintf(e.stderr, "usage: %s\n", cmd.UseLine())
		fmt.Fprintf(e.stderr, "`%s --help` shows the flags and examples\n", name)
	}
	return exitInvalid
}

// plural counts n of noun for a person: "1 batch", "2 batches", "0 devices".
func plural(n int, noun string) string {
	switch {
	case n == 1:
	case strings.HasSuffix(noun, "ch") || strings.HasSuffix(noun, "s") || strings.HasSuffix(noun, "x"):
		noun += "es"
	default:
		noun += "s"
	}
	return fmt.Sprintf("%d %s", n, noun)
}
