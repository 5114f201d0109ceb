package main

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

var updateScripts = flag.Bool("update", false, "rewrite the expected output in testdata/script from the current output")

// TestMain lets the test binary run as `rollout` inside test scripts, in-process and without a
// separate build.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"rollout": func() { os.Exit(Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) },
	})
}

// TestScripts runs every testdata/script/*.txtar. Scripts see $ROOT, the repository root, so they can
// use plans/examples and other fixtures in place.
func TestScripts(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{
		Dir:           "testdata/script",
		UpdateScripts: *updateScripts,
		Setup: func(env *testscript.Env) error {
			env.Setenv("ROOT", root)
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exitcode":   exitcode,
			"until-exit": untilExit,
		},
	})
}

// exitcode runs `exitcode N PROG ARGS...`: PROG must exit with code N. Its output is kept for stdout
// and stderr checks like exec's.
func exitcode(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exitcode N program [args...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exitcode: %q is not a number", args[0])
	}
	if got := run(ts, "exitcode", args[1:]); got != want {
		ts.Fatalf("%s exited %d, want %d", args[1], got, want)
	}
}

// untilRuns bounds until-exit: a rollout that needs more runs than this is stuck.
const untilRuns = 200

// untilExit runs `until-exit [-append FILE] [-stderr REGEXP] N PROG ARGS...`: PROG again and again, a
// moment apart, until it exits with code N (and, with -stderr, its standard error matches REGEXP),
// at most untilRuns times; exit 1 (usage, an invalid plan), which no later run changes, ends it at
// once unless N is 1. -append adds every run's standard output to FILE, as a log of all the
// runs; the last run's output is kept for stdout and stderr checks like exec's.
func untilExit(ts *testscript.TestScript, neg bool, args []string) {
	const usage = "usage: until-exit [-append FILE] [-stderr REGEXP] N program [args...]"
	var appendTo string
	var stderrRE *regexp.Regexp
	for len(args) > 1 && strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "-append":
			appendTo = ts.MkAbs(args[1])
		case "-stderr":
			stderrRE = regexp.MustCompile("(?m)" + args[1]) // multi-line, as stdout and stderr checks match
		default:
			ts.Fatalf("%s", usage)
		}
		args = args[2:]
	}
	if neg || len(args) < 2 {
		ts.Fatalf("%s", usage)
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("until-exit: %q is not a number", args[0])
	}
	var codes []int
	for range untilRuns {
		got := run(ts, "until-exit", args[1:])
		codes = append(codes, got)
		if appendTo != "" {
			f, err := os.OpenFile(appendTo, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
			ts.Check(err)
			_, err = f.WriteString(ts.ReadFile("stdout"))
			ts.Check(errors.Join(err, f.Close()))
		}
		if got == want && (stderrRE == nil || stderrRE.MatchString(ts.ReadFile("stderr"))) {
			ts.Logf("until-exit: %s exited %d after %d runs", args[1], want, len(codes))
			return
		}
		if got == 1 && want != 1 {
			ts.Fatalf("%s exited 1 after %d runs (exits so far %v), want %d", args[1], len(codes), codes, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	ts.Fatalf("%s did not exit %d in %d runs; it exited %v", args[1], want, untilRuns, codes)
}

// run execs prog with args in the script and returns its exit code.
func run(ts *testscript.TestScript, cmd string, args []string) int {
	if err := ts.Exec(args[0], args[1:]...); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("%s: %v", cmd, err)
		}
		return ee.ExitCode()
	}
	return 0
}

// syncBuffer is a bytes.Buffer that a process writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
