package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/iot-rollout/rollout/emulator"
	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/notify"
	"github.com/iot-rollout/rollout/plan"
	"github.com/spf13/pflag"
)

// Every command declares its flags one way: an options struct with a bind method that registers
// them on the command's pflag set, and a check method that says what is wrong with the values before
// anything runs. The groups below are shared by the commands that need them.

// hubFlags say where the state lives and how to reach the hub: plan, apply and rollback share them.
type hubFlags struct {
	state   string
	emulate string
	tier    string
	units   int
	hub     string
	caFile  string
	// subscription is the Azure subscription of the --hub, to read its tier from Azure Resource
	// Manager (--subscription, else AZURE_SUBSCRIPTION_ID).
	subscription string
	seed         int64
	queryLag     time.Duration
	faults       string
	// keepHub keeps an emulated hub's twins and jobs beside an explicit --state (apply and rollback:
	// runs that continue a rollout); a preview leaves the state directory alone.
	keepHub bool
	// plan is the plan the command runs, when it has one: a plan with hubs names its own hubs.
	plan *plan.Plan
	// changed reports whether a flag was given on the command line; set by bind.
	changed func(name string) bool
}

// bind registers the hub flags on fs; each command words --state and --tier for what it does.
func (f *hubFlags) bind(fs *pflag.FlagSet, e *env, stateUsage, tierUsage string) {
	fs.StringVar(&f.state, "state", defaultStateDir(e), stateUsage)
	fs.Var(&emulateFlag{f}, "emulate", "start the embedded IoT Hub emulator with this fleet file instead of connecting to a hub; for a plan with hubs, NAME=FLEET once per hub")
	fs.StringVar(&f.tier, "tier", "", tierUsage)
	fs.IntVar(&f.units, "units", 1, "the hub's purchased units")
	fs.StringVar(&f.hub, "hub", "", "hub host name, authenticated with Microsoft Entra (instead of IOTHUB_CONNECTION_STRING)")
	fs.StringVar(&f.caFile, "ca-file", "", "extra CA certificate (PEM) to trust, for a local hub")
	fs.StringVar(&f.subscription, "subscription", e.getenv("AZURE_SUBSCRIPTION_ID"), "with --hub: the hub's Azure subscription, to read its tier and units from Azure Resource Manager (env AZURE_SUBSCRIPTION_ID)")
	fs.Int64Var(&f.seed, "seed", 0, "with --emulate: the emulator's seed")
	fs.DurationVar(&f.queryLag, "query-lag", 0, "with --emulate: how far twin queries lag behind the twins")
	fs.StringVar(&f.faults, "faults", "", "with --emulate: injected faults, e.g. 429=10%,503=5%")
	f.changed = func(name string) bool { return fs.Changed(name) }
}

// check says what is wrong with the hub flags, before any hub is dialled.
func (f *hubFlags) check() error {
	if f.units < 1 {
		return errors.New("--units must be at least 1")
	}
	if f.tier != "" {
		if _, err := hubapi.TierQuotas(f.tier, f.units); err != nil {
			return fmt.Errorf("--tier: %w", err)
		}
	}
	if f.emulate != "" && f.hub != "" {
		return errors.New("--emulate and --hub exclude each other")
	}
	if f.emulate == "" {
		for _, name := range []string{"seed", "query-lag", "faults"} {
			if f.changed(name) {
				return fmt.Errorf("--%s needs --emulate", name)
			}
		}
	}
	if f.faults != "" {
		if _, err := emulator.ParseFaults(f.faults); err != nil {
			return fmt.Errorf("--faults: %w", err)
		}
	}
	return nil
}

// runFlags are the flags of the commands that run the engine, apply and rollback: the hub flags and
// how to report.
type runFlags struct {
	hubFlags
	output string
	report string
	noWait bool
	notify string
	// notifyEnv is ROLLOUT_NOTIFY_URL, read at bind time but never a flag default: help prints
	// defaults, and the URL is a secret.
	notifyEnv string
	// lockTimeout: how long to wait for a rollout another process holds.
	lockTimeout time.Duration
}

// bind registers the run flags on fs; withNoWait adds --no-wait (apply's, not rollback's).
func (f *runFlags) bind(fs *pflag.FlagSet, e *env, withNoWait bool) {
	f.hubFlags.bind(fs, e,
		"state directory (env ROLLOUT_STATE); with --emulate, a temporary one by default, and given, it keeps the emulated hub too",
		"the hub's tier (F1, S1, S2, S3 or unlimited) to pace to; default S1 for a hub, unlimited with --emulate")
	fs.StringVar(&f.output, "output", "text", "output: text (progress bars on a terminal, plain lines otherwise) or json (one event per line)")
	fs.StringVar(&f.report, "report", "", "write the per-device outcome report to this file: .json, .xml (JUnit) or .html (one self-contained page)")
	fs.DurationVar(&f.lockTimeout, "lock-timeout", 0, "wait up to this long for a rollout another process holds, instead of exiting 4 (a dead holder's shared lease lapses within 60 s: 70s rides it out)")
	fs.StringVar(&f.notify, "notify", "", "POST the events a person acts on as JSON to this webhook URL (env ROLLOUT_NOTIFY_URL); never printed")
	f.notifyEnv = e.getenv("ROLLOUT_NOTIFY_URL")
	if withNoWait {
		fs.BoolVar(&f.noWait, "no-wait", false, "advance as far as possible now and exit (10 while waiting for a window, bake or approval); for cron")
	}
}

// check says what is wrong with the run flags, before any hub is dialled.
func (f *runFlags) check() error {
	if f.output != "text" && f.output != "json" {
		return fmt.Errorf("unknown --output %q: want text or json", f.output)
	}
	if f.report != "" {
		if err := checkReportPath(f.report); err != nil {
			return fmt.Errorf("--report: %w", err)
		}
	}
	if f.notify == "" {
		f.notify = f.notifyEnv
	}
	if f.notify != "" {
		if err := notify.Check(f.notify); err != nil {
			return fmt.Errorf("--notify (or ROLLOUT_NOTIFY_URL): %w", err)
		}
	}
	return f.hubFlags.check()
}

// stateFlag registers --state with its environment default, for the commands that read or write a
// rollout's state and need no hub.
func stateFlag(fs *pflag.FlagSet, e *env, dir *string) {
	fs.StringVar(dir, "state", defaultStateDir(e), "state directory, or blob container URL for a shared state (env ROLLOUT_STATE)")
}

// defaultStateDir is the state directory when --state is not given: $ROLLOUT_STATE, else .rollout.
func defaultStateDir(e *env) string {
	if dir := e.getenv("ROLLOUT_STATE"); dir != "" {
		return dir
	}
	return ".rollout"
}

// byFlags are who acts and why, for the records approve, pause, resume and promote write.
type byFlags struct {
	by     string
	reason string
}

func (f *byFlags) bind(fs *pflag.FlagSet, reasonUsage string) {
	fs.StringVar(&f.by, "by", "", "who acts (default: $GITHUB_ACTOR, $BUILD_REQUESTEDFOR, else $USER@host)")
	fs.StringVar(&f.reason, "reason", "", reasonUsage)
}
