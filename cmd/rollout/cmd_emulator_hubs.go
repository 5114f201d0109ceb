package main

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/iot-rollout/rollout/emulator"
)

// emulatorHub is one hub of `rollout emulator --hub NAME=FLEET`.
type emulatorHub struct{ name, fleet string }

// hubsFlag is --hub NAME=FLEET, once per hub; the names are a plan's hub names.
type hubsFlag struct{ hubs *[]emulatorHub }

func (v *hubsFlag) String() string {
	if v.hubs == nil {
		return ""
	}
	var out []string
	for _, h := range *v.hubs {
		out = append(out, h.name+"="+h.fleet)
	}
	return strings.Join(out, ",")
}

func (v *hubsFlag) Set(s string) error {
	m := hubFleetArg.FindStringSubmatch(s)
	if m == nil {
		return fmt.Errorf("%q is not NAME=FLEET (a hub name as plans write them: lower-case letters, digits and '-', then the fleet file)", s)
	}
	for _, h := range *v.hubs {
		if h.name == m[1] {
			return fmt.Errorf("hub %s is given twice", m[1])
		}
	}
	*v.hubs = append(*v.hubs, emulatorHub{m[1], m[2]})
	return nil
}

func (v *hubsFlag) Type() string { return "NAME=FLEET" }

// checkHubs refuses what --hub cannot go with.
func (o *emulatorOptions) checkHubs() error {
	switch {
	case len(o.hubs) == 0:
		return nil
	case o.fleet != "":
		return errors.New("--fleet serves one hub, --hub NAME=FLEET one per hub: give one or the other")
	case len(o.hubs) > 1 && o.opts.HostName != "":
		return errors.New("--host-name names the host of one hub; with several --hub each connection string names its own address")
	}
	for _, addr := range []string{o.opts.Addr, o.opts.MQTTAddr} {
		if addr == "" {
			continue
		}
		if _, err := portAfter(addr, len(o.hubs)-1); err != nil {
			return err
		}
	}
	return nil
}

// emulatorSpec is one emulator to start: the hub's name ("" without --hub) and its options.
type emulatorSpec struct {
	name string
	opts emulator.Options
}

// hubSpecs loads the fleets and gives the emulators to start: one without --hub, else one per hub in
// the order given, the n-th (from 0) listening on --listen's port + n and --mqtt-listen's + n (port 0:
// each a free port), with --data's file per hub (hub.json: hub-eu.json, hub-us.json).
func (o emulatorOptions) hubSpecs() ([]emulatorSpec, error) {
	if len(o.hubs) == 0 {
		opts := o.opts
		if o.fleet != "" {
			f, err := emulator.LoadFleet(o.fleet)
			if err != nil {
				return nil, err
			}
			opts.Fleet = f
		}
		return []emulatorSpec{{opts: opts}}, nil
	}
	var out []emulatorSpec
	for n, h := range o.hubs {
		f, err := emulator.LoadFleet(h.fleet)
		if err != nil {
			return nil, fmt.Errorf("hub %s: %w", h.name, err)
		}
		opts := o.opts
		opts.Fleet = f
		if opts.Addr, err = portAfter(o.opts.Addr, n); err != nil {
			return nil, err
		}
		if opts.MQTTAddr != "" {
			if opts.MQTTAddr, err = portAfter(o.opts.MQTTAddr, n); err != nil {
				return nil, err
			}
		}
		if d := o.opts.DataFile; d != "" {
			ext := filepath.Ext(d)
			opts.DataFile = strings.TrimSuffix(d, ext) + "-" + h.name + ext
		}
		out = append(out, emulatorSpec{name: h.name, opts: opts})
	}
	return out, nil
}

// portAfter is addr with its port moved on by n (port 0 stays 0: a free port).
func portAfter(addr string, n int) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("address %q: %v", addr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return "", fmt.Errorf("address %q: the port is not a number from 0 to 65535", addr)
	}
	if p == 0 {
		return addr, nil
	}
	if p+n > 65535 {
		return "", fmt.Errorf("address %q: %d hubs need ports up to %d, above 65535", addr, n+1, p+n)
	}
	return net.JoinHostPort(host, strconv.Itoa(p+n)), nil
}

// hubPrefix starts a message about hub name ("" without --hub).
func hubPrefix(name string) string {
	if name == "" {
		return ""
	}
	return "hub " + name + ": "
}

// hubVar is the environment variable a hub's value is printed as: IOTHUB_WHAT, or for hub NAME
// IOTHUB_NAME_WHAT (upper case, '-' as '_'), the names a plan's `connection: env:VAR` can refer to.
func hubVar(name, what string) string {
	if name == "" {
		return "IOTHUB_" + what
	}
	return "IOTHUB_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")) + "_" + what
}
