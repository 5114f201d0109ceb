package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// readBuildInfo is how the binary learns its version; tests pass their own.
var readBuildInfo = debug.ReadBuildInfo

// version is what a build says of itself.
type version struct {
	module   string // the main module's path
	version  string // its version: a tag, a pseudo-version, or "(devel)"
	commit   string // the VCS revision it was built from, when known
	modified bool   // the work tree had changes
	goVer    string // the Go toolchain that built it
	platform string
}

// buildVersion reads the build's version from read (runtime/debug.ReadBuildInfo): the module version
// the go command stamped (the tag or pseudo-version of a `go install ...@version`, or of a build in
// a checkout), the commit and whether the tree was modified, and the Go version.
func buildVersion(read func() (*debug.BuildInfo, bool)) version {
	v := version{module: "github.com/iot-rollout/rollout", version: "(devel)", goVer: runtime.Version(),
		platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := read()
	if !ok {
		return v
	}
	if bi.Main.Path != "" {
		v.module = bi.Main.Path
	}
	if bi.Main.Version != "" {
		v.version = bi.Main.Version
	}
	if bi.GoVersion != "" {
		v.goVer = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.commit = s.Value
		case "vcs.modified":
			v.modified = s.Value == "true"
		}
	}
	return v
}

// short is the version as `rollout --version` prints it after the program name.
func (v version) short() string {
	s := v.version
	if v.commit != "" {
		s += fmt.Sprintf(" (commit %.12s", v.commit)
		if v.modified {
			s += ", modified"
		}
		s += ")"
	}
	return s
}

func newVersionCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print the build's version, commit and Go version",
		Long:  "Prints the module version this binary was built as, the commit it was built from, and the Go version.",
		Example: examples(
			"rollout version",
			"rollout --version"),
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			v := buildVersion(readBuildInfo)
			fmt.Fprintf(e.stdout, "rollout %s\n", v.version)
			fmt.Fprintf(e.stdout, "module:  %s\n", v.module)
			commit := v.commit
			if commit == "" {
				commit = "unknown (not built from a checkout)"
			} else if v.modified {
				commit += " (modified)"
			}
			fmt.Fprintf(e.stdout, "commit:  %s\n", commit)
			fmt.Fprintf(e.stdout, "go:      %s %s\n", v.goVer, v.platform)
			return nil
		},
	}
}
