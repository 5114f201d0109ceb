package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/iot-rollout/rollout/emulator"
	"github.com/iot-rollout/rollout/engine"
	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/hubset"
	"github.com/iot-rollout/rollout/plan"
)

// emulateFlag is --emulate, which may be given once per hub as NAME=FLEET. The values are kept one a
// line in hubFlags.emulate, so that a single --emulate FLEET reads as it always did.
type emulateFlag struct{ f *hubFlags }

func (v *emulateFlag) String() string {
	if v.f == nil {
		return ""
	}
	return v.f.emulate
}

func (v *emulateFlag) Set(s string) error {
	if s == "" {
		return errors.New("needs a fleet file")
	}
	if v.f.emulate != "" {
		v.f.emulate += "\n"
	}
	v.f.emulate += s
	return nil
}

func (v *emulateFlag) Type() string { return "[NAME=]FLEET" }

// hubFleetArg is NAME=FLEET: a hub name as plans write them, then the fleet file.
var hubFleetArg = regexp.MustCompile(`^([a-z][a-z0-9-]{0,19})=(.+)$`)

// emulatedHubs splits --emulate values into fleet files by hub name; plain is the one value without
// a name (a plan without hubs).
func emulatedHubs(emulate string) (byHub map[string]string, plain string, err error) {
	byHub = map[string]string{}
	for _, v := range strings.Split(emulate, "\n") {
		m := hubFleetArg.FindStringSubmatch(v)
		switch {
		case m == nil && (plain != "" || len(byHub) > 0), m != nil && plain != "":
			return nil, "", errors.New("--emulate: give one fleet file, or NAME=FLEET once per hub of the plan")
		case m == nil:
			plain = v
		case byHub[m[1]] != "":
			return nil, "", fmt.Errorf("--emulate: hub %s is given twice", m[1])
		default:
			byHub[m[1]] = m[2]
		}
	}
	return byHub, plain, nil
}

// checkEmulate checks --emulate against the plan's hubs: NAME=FLEET for exactly the plan's hubs,
// or one plain fleet for a plan without hubs.
func (f *hubFlags) checkEmulate(p *plan.Plan) error {
	if f.emulate == "" {
		return nil
	}
	byHub, plain, err := emulatedHubs(f.emulate)
	if err != nil {
		return err
	}
	names := p.HubNames()
	if len(names) == 0 {
		if plain == "" {
			return errors.New("--emulate NAME=FLEET is for a plan with hubs; this plan has none: give --emulate FLEET")
		}
		return nil
	}
	if plain != "" {
		return fmt.Errorf("the plan runs on hubs %s: give --emulate NAME=FLEET for each", strings.Join(names, ", "))
	}
	for name := range byHub {
		if !slices.Contains(names, name) {
			return fmt.Errorf("--emulate %s=...: the plan has no hub %s (its hubs: %s)", name, name, strings.Join(names, ", "))
		}
	}
	for _, name := range names {
		if byHub[name] == "" {
			return fmt.Errorf("--emulate: no fleet for hub %s (give --emulate %s=FLEET)", name, name)
		}
	}
	return nil
}

// connectHubs reaches every hub of a plan with hubs, concurrently in effect (each first contact is
// short), and returns a session over a hubset.Set of them. Each hub is paced to its own tier: the
// plan's tier for it, else --tier, else what the hub states, else S1 (said once). A connection variable that is
// not set fails with its name, never a value.
func (f *hubFlags) connectHubs(ctx context.Context, e *env, p *plan.Plan) (*engSession, error) {
	if err := f.checkEmulate(p); err != nil {
		return nil, &fleetError{err}
	}
	s := &engSession{name: strings.Join(p.HubNames(), ",")}
	if f.emulate != "" {
		s.name = emulatedPrefix + f.emulate
	}
	members := map[string]engine.Hub{}
	s.parts = map[string]engine.HubTarget{}
	var qs []hubapi.Quotas
	for _, h := range p.Hubs {
		c, q, err := f.connectHub(ctx, e, s, h)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("hub %s: %w", h.Name, err)
		}
		members[h.Name] = c
		s.parts[h.Name] = engine.HubTarget{Hub: c, Quotas: q}
		qs = append(qs, q)
	}
	s.hub, s.quotas = hubset.New(members), hubset.Quotas(qs)
	return s, nil
}

// connectHub reaches one hub of the plan (emulated with --emulate) and gives its client, paced.
func (f *hubFlags) connectHub(ctx context.Context, e *env, s *engSession, h plan.Hub) (*hubapi.Client, hubapi.Quotas, error) {
	if f.emulate != "" {
		return f.emulatedHub(ctx, s, h)
	}
	var dial func(hubapi.Options) (*hubapi.Client, error)
	if h.Connection != "" {
		cs := e.getenv(h.Connection)
		if cs == "" {
			return nil, hubapi.Quotas{}, fmt.Errorf("environment variable %s is not set (the plan's connection: env:%s)", h.Connection, h.Connection)
		}
		dial = func(o hubapi.Options) (*hubapi.Client, error) { return hubapi.NewFromConnectionString(cs, o) }
	} else {
		cred, err := azidentity.NewDefaultAzureCredential(nil)
		if err != nil {
			return nil, hubapi.Quotas{}, fmt.Errorf("Microsoft Entra credential: %w", err)
		}
		dial = func(o hubapi.Options) (*hubapi.Client, error) { return hubapi.NewWithCredential(h.Host, cred, o) }
	}
	first, err := dial(hubapi.Options{CAFile: f.caFile})
	if err != nil {
		return nil, hubapi.Quotas{}, err
	}
	info, err := first.Probe(ctx)
	if err != nil {
		return nil, hubapi.Quotas{}, err
	}
	hf := *f
	if h.Tier != "" {
		hf.tier, hf.units = h.Tier, h.Units
	}
	q, err := hf.quotas(e, info)
	if err != nil {
		return nil, hubapi.Quotas{}, err
	}
	c, err := dial(hubapi.Options{CAFile: f.caFile, Quotas: &q, MinBackoff: hubBackoff[0], MaxBackoff: hubBackoff[1]})
	return c, q, err
}

// hubBackoff is the first and the longest wait between retries of a hub call of a plan with hubs
// (zero: hubapi's defaults, 0.5 s doubling to 30 s, eight retries, about a minute and a half in
// all before a hub that cannot be reached is a hub error). A variable for tests.
var hubBackoff [2]time.Duration

// emulatedHub starts the in-process emulator of one hub on its --emulate NAME=FLEET fleet, at the
// plan's tier for the hub (else --tier, else unlimited). With a kept state each hub's twins and jobs
// are kept beside it, a file per hub.
func (f *hubFlags) emulatedHub(ctx context.Context, s *engSession, h plan.Hub) (*hubapi.Client, hubapi.Quotas, error) {
	byHub, _, _ := emulatedHubs(f.emulate)
	fleet, err := emulator.LoadFleet(byHub[h.Name])
	if err != nil {
		return nil, hubapi.Quotas{}, &fleetError{err}
	}
	tier, units := h.Tier, h.Units
	if tier == "" {
		tier, units = f.tier, f.units
	}
	if tier == "" {
		tier = "unlimited"
	}
	faults, _ := emulator.ParseFaults(f.faults)
	opts := emulator.Options{Fleet: fleet, Tier: tier, Units: units, Seed: f.seed, QueryLag: f.queryLag, Faults: faults}
	if f.changed("state") && f.keepHub && !sharedState(f.state) {
		if err := os.MkdirAll(f.state, 0o700); err != nil {
			return nil, hubapi.Quotas{}, err
		}
		if len(s.cleanup) == 0 {
			unlock, err := lockKeptHub(ctx, f.state)
			if err != nil {
				return nil, hubapi.Quotas{}, err
			}
			s.cleanup = append(s.cleanup, unlock)
		}
		opts.DataFile = filepath.Join(f.state, "emulator-hub-"+h.Name+".json")
	}
	srv, err := emulator.Start(ctx, opts)
	if err != nil {
		return nil, hubapi.Quotas{}, fmt.Errorf("start the emulator: %w", err)
	}
	s.cleanup = append(s.cleanup, func() { srv.Close() })
	q := srv.Quotas()
	c, err := hubapi.NewFromConnectionString(srv.ConnectionString(), hubapi.Options{PlainHTTP: true, Quotas: &q})
	return c, q, err
}

// failedHubs names the hubs of a plan with hubs whose errors err holds, sorted, each once.
func failedHubs(err error) []string {
	var names []string
	var walk func(error)
	walk = func(err error) {
		switch x := err.(type) {
		case nil:
		case *hubset.HubError:
			names = append(names, x.Hub)
		case interface{ Unwrap() []error }:
			for _, e := range x.Unwrap() {
				walk(e)
			}
		default:
			walk(errors.Unwrap(err))
		}
	}
	walk(err)
	slices.Sort(names)
	return slices.Compact(names)
}

// hubList words hub names for a sentence: "hub eu", "hubs eu and us".
func hubList(names []string) string {
	if len(names) == 1 {
		return "hub " + names[0]
	}
	return "hubs " + strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}
