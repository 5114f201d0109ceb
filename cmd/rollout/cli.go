package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// Exit codes, as the README documents them.
const (
	exitOK         = 0  // done (with --no-wait: progressing normally)
	exitInvalid    = 1  // invalid plan or usage
	exitHalted     = 2  // halted by a gate
	exitRolledBack = 3  // rolled back
	exitHub        = 4  // hub, auth or state error
	exitWaiting    = 10 // waiting for a schedule window, bake or approval (with --no-wait)
	// exitInterrupted: Ctrl-C stopped a run at a safe point (128 + SIGINT, the shell convention);
	// running the same command again continues.
	exitInterrupted = 130
)

// env is what every command gets from Main: its arguments and its standard streams. Commands never
// touch os.Stdout or os.Args themselves, so each one runs in-process in tests.
type env struct {
	args   []string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
}

// command is one `rollout` subcommand.
type command struct {
	summary string
	run     func(e *env) int
}

// commands is the command table; each command lives in its own cmd_<name>.go file and registers here.
var commands = map[string]command{}

// Main runs rollout with args (without the program name) and returns the process exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return mainEnv(args, stdin, stdout, stderr, osGetenv)
}

func mainEnv(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return exitInvalid
		}
		return exitOK
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "rollout: unknown command %q\n\n", args[0])
		usage(stderr)
		return exitInvalid
	}
	return cmd.run(&env{args: args[1:], stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv})
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: rollout <command> [flags] [args]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	names := make([]string, 0, len(commands))
	for name := range commands {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(w, "  %-10s %s\n", name, commands[name].summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Exit codes: 0 done, 1 invalid plan or usage, 2 halted, 3 rolled back, 4 hub/auth/state error, 10 waiting (--no-wait).")
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
