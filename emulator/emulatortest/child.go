package emulatortest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime/pprof"
	"strings"
	"testing"

	"github.com/iot-rollout/rollout/emulator"
)

// childEnv makes a test binary serve one emulator instead of running its tests: benchmarks start
// their hubs as processes of their own, as real hubs are apart from the client, so that the client's
// figures (time, memory) are its own.
const childEnv = "ROLLOUT_EMULATOR_CHILD"

// ServeChildIfAsked serves the emulator a StartChild asked for, and exits, when this process is such
// a child; otherwise it returns at once. Call it first in TestMain.
//
// ROLLOUT_BENCH_EMULATOR_PROFILE names a file for the child's CPU profile, to see the hub's side of
// a benchmark.
func ServeChildIfAsked() {
	spec := os.Getenv(childEnv)
	if spec == "" {
		return
	}
	os.Exit(serveChild(spec))
}

func serveChild(spec string) int {
	var s struct {
		Fleet, Tier string
		Units       int
	}
	if err := json.Unmarshal([]byte(spec), &s); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fleet, err := emulator.LoadFleet(s.Fleet)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv, err := emulator.Start(context.Background(), emulator.Options{Fleet: fleet, Tier: s.Tier, Units: s.Units})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if path := os.Getenv("ROLLOUT_BENCH_EMULATOR_PROFILE"); path != "" {
		if f, err := os.Create(path); err == nil && pprof.StartCPUProfile(f) == nil {
			defer pprof.StopCPUProfile()
		}
	}
	fmt.Printf("%s %s\n", srv.URL(), srv.ConnectionString())
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	srv.Close()
	return 0
}

// Child is an emulator serving in a child process.
type Child struct {
	URL              string // its plain-HTTP base URL
	ConnectionString string
}

// StartChild starts the test binary again as an emulator of fleetFile at tier and units (its
// TestMain must call ServeChildIfAsked), and stops it when tb ends.
func StartChild(tb testing.TB, fleetFile, tier string, units int) Child {
	tb.Helper()
	spec, _ := json.Marshal(map[string]any{"Fleet": fleetFile, "Tier": tier, "Units": units})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(spec))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		tb.Fatalf("emulator child: %v", err)
	}
	url, cs, _ := strings.Cut(strings.TrimSpace(line), " ")
	return Child{URL: url, ConnectionString: cs}
}
