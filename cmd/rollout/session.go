package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/iot-rollout/rollout/emulator"
	"github.com/iot-rollout/rollout/engine"
	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/statestore/bolt"
)

// engSession is a connected hub with its quotas, and what to close at the end.
type engSession struct {
	hub    engine.Hub
	name   string // the hub for people: its host, or "emulated:FLEET"
	quotas hubapi.Quotas
	// parts are the hubs of a plan with hubs, each with its own client and quotas (nil otherwise).
	parts   map[string]engine.HubTarget
	cleanup []func()
}

func (s *engSession) close() {
	for i := len(s.cleanup) - 1; i >= 0; i-- {
		s.cleanup[i]()
	}
}

// emulatedPrefix starts the recorded hub name of a rollout on an emulated fleet.
const emulatedPrefix = "emulated:"

// fleetError marks a fleet file that could not be loaded: a usage error (exit 1), not a hub error.
type fleetError struct{ err error }

func (e *fleetError) Error() string { return e.err.Error() }
func (e *fleetError) Unwrap() error { return e.err }

// connectFailed reports why connect failed for the command name and gives the exit code: a fleet
// file's problems are usage errors (exit 1), shown as a plan's diagnostics are; anything else is a hub
// error (exit 4).
func connectFailed(e *env, name string, err error) int {
	var fe *fleetError
	if !errors.As(err, &fe) {
		fmt.Fprintf(e.stderr, "rollout %s: %v\n", name, err)
		return exitHub
	}
	if diags, ok := fleetDiagnostics(err); ok {
		printDiagnostics(e, diags)
		fmt.Fprintf(e.stderr, "rollout %s: the fleet file is invalid\n", name)
	} else {
		fmt.Fprintf(e.stderr, "rollout %s: %v\n", name, err)
	}
	return exitInvalid
}

// connect reaches the hub the flags name: the in-process emulator, a connection string from the
// environment, or Microsoft Entra. It makes the first contact with the hub before it returns, so a
// hub that cannot be reached fails here, before any rollout state exists. Secrets never appear in
// its errors.
func (f *hubFlags) connect(ctx context.Context, e *env) (*engSession, error) {
	if f.plan != nil && len(f.plan.Hubs) > 0 {
		return f.connectHubs(ctx, e, f.plan)
	}
	if f.plan != nil {
		if err := f.checkEmulate(f.plan); err != nil {
			return nil, &fleetError{err}
		}
	}
	if f.emulate != "" {
		return f.emulated(ctx)
	}
	s := &engSession{}
	var dial func(hubapi.Options) (*hubapi.Client, error)
	var cred azcore.TokenCredential
	switch cs := e.getenv("IOTHUB_CONNECTION_STRING"); {
	case f.hub != "":
		var err error
		if cred, err = newCredential(); err != nil {
			return nil, fmt.Errorf("Microsoft Entra credential: %w", err)
		}
		dial = func(o hubapi.Options) (*hubapi.Client, error) { return hubapi.NewWithCredential(f.hub, cred, o) }
	case cs != "":
		dial = func(o hubapi.Options) (*hubapi.Client, error) { return hubapi.NewFromConnectionString(cs, o) }
	default:
		return nil, errors.New("no hub: set IOTHUB_CONNECTION_STRING, or give --hub HOST (Microsoft Entra) or --emulate FLEET")
	}
	// The first contact learns the tier when the hub states it (an emulator does); the client that
	// runs the rollout is then built paced to the tier: the pacing is fixed when a client is made.
	first, err := dial(hubapi.Options{CAFile: f.caFile})
	if err != nil {
		return nil, err
	}
	info, err := first.Probe(ctx)
	if err != nil {
		return nil, err
	}
	if f.tier == "" && info.Tier == "" && cred != nil && f.subscription != "" {
		if err := f.tierFromAzure(ctx, e, cred); err != nil {
			return nil, err
		}
	}
	q, err := f.quotas(e, info)
	if err != nil {
		return nil, err
	}
	s.quotas = q
	c, err := dial(hubapi.Options{CAFile: f.caFile, Quotas: &s.quotas})
	if err != nil {
		return nil, err
	}
	s.hub, s.name = c, c.Host()
	return s, nil
}

// newCredential is the Microsoft Entra credential of --hub (a variable for tests).
var newCredential = func() (azcore.TokenCredential, error) { return azidentity.NewDefaultAzureCredential(nil) }

// tierFromAzure sets --tier and --units from the hub's SKU in Azure Resource Manager. A SKU that cannot
// be read is said once on standard error, and the pacing falls back as without a subscription; a
// Basic hub, which cannot run a rollout, is an error.
func (f *hubFlags) tierFromAzure(ctx context.Context, e *env, cred azcore.TokenCredential) error {
	tier, units, err := hubSKU(ctx, cred, f.subscription, f.hub)
	var basic *basicTierError
	if errors.As(err, &basic) {
		return err
	}
	if err == nil {
		_, err = hubapi.TierQuotas(tier, units)
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "rollout: the hub's tier could not be read from Azure (%v)\n", err)
		return nil
	}
	fmt.Fprintf(e.stderr, "rollout: pacing to tier %s with %s, as Azure Resource Manager states them for %s\n", tier, plural(units, "unit"), f.hub)
	f.tier, f.units = tier, units
	return nil
}

// quotas decides the tier to pace to: --tier when given, else the one the hub states, else S1, the
// most conservative (a hub of a higher tier is only paced more slowly than it could be), said once on
// standard error with the flags that say otherwise.
func (f *hubFlags) quotas(e *env, info hubapi.HubInfo) (hubapi.Quotas, error) {
	if f.tier != "" {
		return hubapi.TierQuotas(f.tier, f.units)
	}
	if info.Tier != "" {
		q, err := info.Quotas()
		if err != nil {
			return hubapi.Quotas{}, err
		}
		return *q, nil
	}
	fmt.Fprintln(e.stderr, "rollout: pacing to tier S1 (1 concurrent job, 10 job device operations a second); "+
		"give the hub's tier with --tier S2|S3 and --units N to go faster")
	return hubapi.TierQuotas("S1", f.units)
}

// emulated starts the in-process emulator on the --emulate fleet and connects to it.
func (f *hubFlags) emulated(ctx context.Context) (*engSession, error) {
	s := &engSession{name: emulatedPrefix + f.emulate}
	fleet, err := emulator.LoadFleet(f.emulate)
	if err != nil {
		return nil, &fleetError{err}
	}
	tier := f.tier
	if tier == "" {
		tier = "unlimited"
	}
	faults, _ := emulator.ParseFaults(f.faults)
	opts := emulator.Options{Fleet: fleet, Tier: tier, Units: f.units, Seed: f.seed, QueryLag: f.queryLag, Faults: faults}
	if f.changed("state") && f.keepHub && !sharedState(f.state) {
		// With a kept state, the emulated hub is kept beside it, so that a rollout continued by a
		// later run (--no-wait from cron, or after Ctrl-C) finds its twins and jobs again.
		if err := os.MkdirAll(f.state, 0o700); err != nil {
			return nil, err
		}
		// One run at a time owns the kept hub, from loading its file to saving it: a rollout's lock
		// is released before the hub is saved, and the next run must see what this one left.
		unlock, err := lockKeptHub(ctx, f.state)
		if err != nil {
			return nil, err
		}
		s.cleanup = append(s.cleanup, unlock)
		opts.DataFile = filepath.Join(f.state, "emulator-hub.json")
	}
	srv, err := emulator.Start(ctx, opts)
	if err != nil {
		s.close()
		return nil, fmt.Errorf("start the emulator: %w", err)
	}
	s.cleanup = append(s.cleanup, func() { srv.Close() })
	s.quotas = srv.Quotas()
	c, err := hubapi.NewFromConnectionString(srv.ConnectionString(), hubapi.Options{PlainHTTP: true, Quotas: &s.quotas})
	if err != nil {
		s.close()
		return nil, err
	}
	s.hub = c
	return s, nil
}

// stateDir decides where a run's state lives before the hub is reached: --state, or with --emulate
// and no --state a temporary directory that cleanup removes (the emulated hub is gone with the run,
// and so is its state). temp reports the latter.
func (f *hubFlags) stateDir() (dir string, temp bool, cleanup func(), err error) {
	if f.emulate == "" || f.changed("state") {
		return f.state, false, func() {}, nil
	}
	dir, err = os.MkdirTemp("", "rollout-state-")
	if err != nil {
		return "", false, nil, fmt.Errorf("temporary state directory: %w", err)
	}
	return dir, true, func() { os.RemoveAll(dir) }, nil
}

// lockKeptHub takes the lock of the emulated hub kept in the state directory dir, waiting up to a
// minute for a run that is saving it.
func lockKeptHub(ctx context.Context, dir string) (unlock func(), err error) {
	store, err := engine.OpenStore(ctx, bolt.New(dir), "emulator-hub")
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(time.Minute)
	for {
		unlock, err := store.Lock(time.Now())
		var held *engine.LockedError
		if !errors.As(err, &held) {
			return unlock, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the emulated hub kept in %s is in use by another run (pid %d on %s)", dir, held.Holder.PID, held.Holder.Host)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
