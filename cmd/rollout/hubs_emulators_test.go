package main

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/iot-rollout/rollout/emulator"
)

// startHubs starts one TLS emulator per fleet, all with the CA in dir, and gives them by hub name
// with the environment that connects a plan's env:IOTHUB_<HUB> to each. set, when given, adjusts
// each hub's options.
func startHubs(t *testing.T, dir string, fleets map[string]string, set ...func(hub string, o *emulator.Options)) (map[string]*emulator.Server, []string) {
	t.Helper()
	srvs := map[string]*emulator.Server{}
	var env []string
	for _, name := range sortedNames(fleets) {
		fleet, err := emulator.ParseFleet(name+".yaml", []byte(fleets[name]))
		if err != nil {
			t.Fatal(err)
		}
		opts := emulator.Options{Fleet: fleet, TLS: true, CertDir: dir}
		for _, f := range set {
			f(name, &opts)
		}
		srv, err := emulator.Start(context.Background(), opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		srvs[name] = srv
		env = append(env, "IOTHUB_"+upper(name)+"="+srv.ConnectionString())
	}
	return srvs, env
}

func sortedNames[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// envOf turns KEY=VALUE lines into a getenv map.
func envOf(list []string) map[string]string {
	env := map[string]string{}
	for _, kv := range list {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	return env
}
