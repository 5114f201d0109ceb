package main

import (
	"bytes"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// run runs rollout in-process with args and an empty environment.
func runCLI(t testing.TB, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = mainEnv(args, strings.NewReader(""), &out, &errOut, func(string) string { return "" })
	return code, out.String(), errOut.String()
}

// TestHelpShowsExamples asks every command, subcommands included, for --help: each answers on
// standard output, exit 0, with at least two examples that run rollout.
func TestHelpShowsExamples(t *testing.T) {
	var walk func(c *cobra.Command) []string
	walk = func(c *cobra.Command) []string {
		paths := []string{c.CommandPath()}
		for _, sub := range c.Commands() {
			if sub.Name() != "help" {
				paths = append(paths, walk(sub)...)
			}
		}
		return paths
	}
	paths := walk(newRoot(&env{getenv: func(string) string { return "" }}))
	if len(paths) < 14 {
		t.Fatalf("only %d commands: %v", len(paths), paths)
	}
	for _, path := range paths {
		t.Run(path, func(t *testing.T) {
			args := append(strings.Fields(path)[1:], "--help")
			code, stdout, stderr := runCLI(t, args...)
			if code != exitOK || stderr != "" {
				t.Fatalf("exit %d, stderr %q", code, stderr)
			}
			_, ex, ok := strings.Cut(stdout, "\nExamples:\n")
			if !ok {
				t.Fatalf("no examples in:\n%s", stdout)
			}
			ex, _, _ = strings.Cut(ex, "\n\n")
			n := 0
			for _, line := range strings.Split(ex, "\n") {
				if strings.Contains(line, "rollout") {
					n++
				}
			}
			if n < 2 {
				t.Errorf("%d examples, want at least 2:\n%s", n, ex)
			}
			if !strings.Contains(stdout, "--help") {
				t.Errorf("flags are not listed with a double dash:\n%s", stdout)
			}
		})
	}
}

// TestUsage: a bare rollout is a usage error that lists the commands and the exit codes, 130
// included; an unknown command or flag says so with a way to the help.
func TestUsage(t *testing.T) {
	code, stdout, _ := runCLI(t)
	if code != exitInvalid {
		t.Errorf("bare rollout: exit %d, want %d", code, exitInvalid)
	}
	for _, want := range []string{"apply", "completion", "version", "Exit codes:", "130  stopped by Ctrl-C", "10   waiting"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("usage lacks %q:\n%s", want, stdout)
		}
	}
	code, stdout, _ = runCLI(t, "--help")
	if code != exitOK || !strings.Contains(stdout, "130  stopped by Ctrl-C") {
		t.Errorf("--help: exit %d:\n%s", code, stdout)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"nope"}, `unknown command "nope" for "rollout"`},
		{[]string{"status", "--nope"}, "rollout status: unknown flag: --nope\nusage: rollout status [flags] [NAME]\n`rollout status --help`"},
		{[]string{"apply", "-state", "x", "p.yaml"}, "rollout apply: unknown shorthand flag: 's' in -state"},
		{[]string{"approve", "r"}, "rollout approve: --wave is required"},
		{[]string{"status", "a", "b"}, "give at most one rollout name"},
		{[]string{"completion"}, "give exactly one shell"},
		{[]string{"version", "x"}, `unexpected argument "x"`},
	} {
		code, _, stderr := runCLI(t, tc.args...)
		if code != exitInvalid || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit 1 and %q", tc.args, code, stderr, tc.want)
		}
	}
}

// TestVersion: `rollout version` and `rollout --version` print the module version, the commit and
// the Go version the build info holds.
func TestVersion(t *testing.T) {
	defer func(r func() (*debug.BuildInfo, bool)) { readBuildInfo = r }(readBuildInfo)
	readBuildInfo = func() (*debug.BuildInfo, bool) {
		return &debug.BuildInfo{GoVersion: "go1.99.1",
			Main: debug.Module{Path: "github.com/iot-rollout/rollout", Version: "v1.4.2"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"},
				{Key: "vcs.modified", Value: "true"}}}, true
	}
	code, stdout, _ := runCLI(t, "version")
	want := "rollout v1.4.2\nmodule:  github.com/iot-rollout/rollout\ncommit:  0123456789abcdef0123 (modified)\ngo:      go1.99.1 "
	if code != exitOK || !strings.HasPrefix(stdout, want) {
		t.Errorf("version: exit %d:\n%s\nwant prefix:\n%s", code, stdout, want)
	}
	code, stdout, _ = runCLI(t, "--version")
	if want := "rollout v1.4.2 (commit 0123456789ab, modified)\n"; code != exitOK || stdout != want {
		t.Errorf("--version: exit %d, %q, want %q", code, stdout, want)
	}

	// The build info of this very binary: its main module's version is what version prints.
	readBuildInfo = debug.ReadBuildInfo
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		t.Fatal("no build info")
	}
	_, stdout, _ = runCLI(t, "version")
	if v := bi.Main.Version; v == "" || !strings.HasPrefix(stdout, "rollout "+v+"\n") {
		t.Errorf("version printed %q; the build info says %q", stdout, v)
	}
}
