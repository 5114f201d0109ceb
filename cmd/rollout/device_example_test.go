package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iot-rollout/rollout/emulator"
	"github.com/iot-rollout/rollout/emulator/emulatortest"
	"github.com/iot-rollout/rollout/engine"
	"github.com/iot-rollout/rollout/hubapi"
)

// TestGatewayExampleWithRealDevices rehearses plans/examples/gateway-profile-bench.yaml on its fleet
// as the README shows: the emulator serving the device side, the gateway device program
// (examples/gateway) running as the bench gateways in its own process, and `rollout apply` unchanged.
// The lab wave's gate judges what the programs really answer: a profile they apply passes and the
// rollout ends done; a refusal (400) or a device that never answers fails the gate and rolls the lab
// back, the compensating method reaching the program that had switched.
func TestGatewayExampleWithRealDevices(t *testing.T) {
	bin := buildGateway(t)
	tests := []struct {
		name string
		// supports is what each bench gateway's program can apply; "" attaches a client that
		// subscribes to methods and never answers instead of the program.
		supports [2]string
		exit     int
		want     map[string]string // report row per bench device: outcome, method status or error code
		profile  map[string]string // reported profile afterwards
	}{
		{name: "both apply B", supports: [2]string{"A,B", "A,B"}, exit: exitOK,
			want:    map[string]string{"gwbench-0000": "succeeded 200", "gwbench-0001": "succeeded 200"},
			profile: map[string]string{"gwbench-0000": "B", "gwbench-0001": "B"}},
		{name: "one refuses B", supports: [2]string{"A,B", "A"}, exit: exitRolledBack,
			want:    map[string]string{"gwbench-0000": "succeeded 200 rolled back", "gwbench-0001": "methodError 400 rolled back"},
			profile: map[string]string{"gwbench-0000": "A", "gwbench-0001": "A"}},
		{name: "one never answers", supports: [2]string{"A,B", ""}, exit: exitRolledBack,
			want:    map[string]string{"gwbench-0000": "succeeded 200 rolled back", "gwbench-0001": "timedOut GatewayTimeout rolled back"},
			profile: map[string]string{"gwbench-0000": "A"}},
	}
	fleet, err := os.ReadFile(filepath.Join("..", "..", "testdata", "fleets", "gateway-bench.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			srv := startTLSEmulator(t, dir, string(fleet), emulator.Options{MQTTAddr: "127.0.0.1:0"})
			for i, supports := range tt.supports {
				id := []string{"gwbench-0000", "gwbench-0001"}[i]
				if supports == "" {
					silentDevice(t, srv, id)
				} else {
					startGateway(t, srv, bin, id, supports)
				}
			}
			waitConnected(t, srv, 2)

			report := filepath.Join(dir, "report.json")
			var stdout, stderr bytes.Buffer
			env := map[string]string{"IOTHUB_CONNECTION_STRING": srv.ConnectionString()}
			code := mainEnv([]string{"apply", "--state", filepath.Join(dir, "state"), "--ca-file", srv.CAFile(),
				"--report", report, filepath.Join("..", "..", "plans", "examples", "gateway-profile-bench.yaml")},
				nil, &stdout, &stderr, func(k string) string { return env[k] })
			if code != tt.exit {
				t.Fatalf("apply exited %d, want %d\n%s\n%s", code, tt.exit, stdout.String(), stderr.String())
			}
			rows := reportRows(t, report)
			for id, want := range tt.want {
				if got := rows[id]; got != want {
					t.Errorf("%s: report row %q, want %q", id, got, want)
				}
			}
			for id, want := range tt.profile {
				if got := reportedProfile(t, srv, id); got != want {
					t.Errorf("%s: reported profile %q, want %q", id, got, want)
				}
			}
		})
	}
}

// buildGateway builds the example device program once, as a user's `go build` would.
func buildGateway(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "gateway")
	cmd := exec.Command(goBin, "build", "-o", bin, "../../examples/gateway")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build examples/gateway: %v\n%s", err, out)
	}
	return bin
}

// startGateway runs the device program as device id with the key the registry returns for it, as a
// back end hands a device its connection string, until the test ends.
func startGateway(t *testing.T, srv *emulator.Server, bin, id, supports string) {
	t.Helper()
	resp, body := emulatortest.Do(t, srv, "GET", "/devices/"+id, "", nil)
	var d hubapi.Device
	if resp.StatusCode != 200 || json.Unmarshal(body, &d) != nil {
		t.Fatalf("GET /devices/%s: %d %s", id, resp.StatusCode, body)
	}
	cs, _ := hubapi.ParseConnectionString(srv.ConnectionString())
	deviceCS := "HostName=" + cs.HostName + ";DeviceId=" + id + ";SharedAccessKey=" + d.Authentication.SymmetricKey.PrimaryKey
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "--connection-string", deviceCS, "--ca-file", srv.CAFile(),
		"--mqtt", srv.MQTTAddr(), "--supports", supports)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 5 * time.Second
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		t.Logf("%s:\n%s", id, out.String())
	})
}

// silentDevice connects as id, subscribes to methods and never answers them.
func silentDevice(t *testing.T, srv *emulator.Server, id string) {
	t.Helper()
	pem, err := os.ReadFile(srv.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	cs, _ := hubapi.ParseConnectionString(srv.ConnectionString())
	c := paho.NewClient(paho.NewClientOptions().AddBroker("ssl://" + srv.MQTTAddr()).SetClientID(id).
		SetUsername(cs.HostName + "/" + id + "/?api-version=2021-04-12").SetPassword(cs.SASToken(time.Now().Add(time.Hour))).
		SetProtocolVersion(4).SetCleanSession(false).SetAutoReconnect(false).
		SetTLSConfig(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	if tok := c.Subscribe("$iothub/methods/POST/#", 0, func(paho.Client, paho.Message) {}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", id, tok.Error())
	}
}

// waitConnected waits until n devices are connected and subscribed to methods.
func waitConnected(t *testing.T, srv *emulator.Server, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		live, _ := srv.Connections()
		ready := 0
		for _, c := range live {
			for _, s := range c.Subscriptions {
				if strings.HasPrefix(s, "$iothub/methods/POST/") {
					ready++
				}
			}
		}
		if ready >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d devices connected and subscribed to methods: %+v", ready, n, live)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// reportRows reads a JSON report into "outcome status-or-code[ rolled back]" per device.
func reportRows(t *testing.T, file string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var rep engine.Report
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	rows := map[string]string{}
	for _, r := range rep.Devices {
		s := string(r.Outcome)
		if r.MethodStatus != 0 {
			s += " " + strconv.Itoa(r.MethodStatus)
		}
		if r.ErrorCode != "" {
			s += " " + r.ErrorCode
		}
		if r.RolledBack {
			s += " rolled back"
		}
		rows[r.Device] = s
	}
	return rows
}

// reportedProfile is the profile the device reported, read from its twin.
func reportedProfile(t *testing.T, srv *emulator.Server, id string) string {
	t.Helper()
	resp, body := emulatortest.Do(t, srv, "GET", "/twins/"+id, "", nil)
	var tw struct {
		Properties struct {
			Reported struct {
				Profile string `json:"profile"`
			} `json:"reported"`
		} `json:"properties"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &tw) != nil {
		t.Fatalf("GET /twins/%s: %d %s", id, resp.StatusCode, body)
	}
	return tw.Properties.Reported.Profile
}
