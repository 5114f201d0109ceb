package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/hubapi"
)

// freePorts finds a port p on 127.0.0.1 with p+1 free as well.
func freePorts(t *testing.T) int {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if next, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+1)); err == nil {
			next.Close()
			return p
		}
	}
	t.Fatal("no two free ports in a row")
	return 0
}

// TestEmulatorServesSeveralHubs: `rollout emulator --hub eu=... --hub us=...` serves each hub on its
// own port (--listen's, then the next), prints each hub's connection string under the variable a
// plan's connection refers to and the one CA once, and a plan with hubs runs on them.
func TestEmulatorServesSeveralHubs(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"eu.yaml": "groups:\n  - {name: a, count: 3, idPrefix: eu-, tags: {ring: a}}\n",
		"us.yaml": "groups:\n  - {name: a, count: 5, idPrefix: us-, tags: {ring: a}}\n",
		"plan.yaml": `version: 1
name: served-hubs
hubs:
  eu: {connection: env:IOTHUB_EU_CONNECTION_STRING}
  us: {connection: env:IOTHUB_US_CONNECTION_STRING}
action:
  twinUpdate: {desired: {mode: eco}}
defaults:
  success: {minSuccessRate: 100%}
  batch: {size: 2, growth: 1}
waves:
  - {name: all}
`,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	port := freePorts(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- mainEnvContext(ctx, []string{"emulator", "--hub", "eu=" + filepath.Join(dir, "eu.yaml"), "--hub", "us=" + filepath.Join(dir, "us.yaml"),
			"--listen", "127.0.0.1:" + strconv.Itoa(port), "--mqtt-listen", "off", "--cert-dir", filepath.Join(dir, "ca")},
			nil, stdout, stderr, func(string) string { return "" })
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(stdout.String(), "IOTHUB_US_CONNECTION_STRING=") {
		select {
		case code := <-done:
			t.Fatalf("the emulator exited %d: %s", code, stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection strings: %s", stderr.String())
		}
	}
	env := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		k, v, _ := strings.Cut(line, "=")
		if _, dup := env[k]; dup {
			t.Errorf("%s printed twice", k)
		}
		env[k] = v
	}
	for hub, p := range map[string]int{"EU": port, "US": port + 1} {
		cs, err := hubapi.ParseConnectionString(env["IOTHUB_"+hub+"_CONNECTION_STRING"])
		if err != nil {
			t.Fatalf("hub %s: %v", hub, err)
		}
		if want := "127.0.0.1:" + strconv.Itoa(p); cs.HostName != want {
			t.Errorf("hub %s serves on %s, want %s", hub, cs.HostName, want)
		}
	}
	if env["SSL_CERT_FILE"] == "" || !strings.Contains(stderr.String(), "hub us: 5 devices on https://") {
		t.Errorf("stdout %q\nstderr %s", stdout.String(), stderr.String())
	}

	var out, errOut syncBuffer
	code := mainEnv([]string{"apply", "--state", filepath.Join(dir, "state"), "--ca-file", env["SSL_CERT_FILE"], filepath.Join(dir, "plan.yaml")},
		nil, &out, &errOut, func(k string) string { return env[k] })
	if code != exitOK || !strings.Contains(out.String(), "8 devices") {
		t.Errorf("apply on the served hubs exited %d\n%s\n%s", code, out.String(), errOut.String())
	}
	cancel()
	if code := <-done; code != exitOK {
		t.Errorf("the emulator exited %d after it was stopped: %s", code, stderr.String())
	}
}

func TestEmulatorHubFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--hub", "EU=x.yaml"}, "is not NAME=FLEET"},
		{[]string{"--hub", "eu=a.yaml", "--hub", "eu=b.yaml"}, "hub eu is given twice"},
		{[]string{"--hub", "eu=a.yaml", "--fleet", "f.yaml"}, "give one or the other"},
		{[]string{"--hub", "eu=a.yaml", "--hub", "us=b.yaml", "--host-name", "localhost"}, "--host-name names the host of one hub"},
		{[]string{"--hub", "eu=a.yaml", "--hub", "us=b.yaml", "--listen", "127.0.0.1:65535"}, "above 65535"},
		{[]string{"--hub", "eu=" + filepath.Join(t.TempDir(), "none.yaml")}, "hub eu: "},
	} {
		var stdout, stderr syncBuffer
		code := mainEnv(append([]string{"emulator", "--mqtt-listen", "off"}, tc.args...), nil, &stdout, &stderr, func(string) string { return "" })
		if code != exitInvalid || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 1 and %q", tc.args, code, stderr.String(), tc.want)
		}
	}
}
