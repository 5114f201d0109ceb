package emulator_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/emulator"
	"github.com/iot-rollout/rollout/emulator/emulatortest"
	"github.com/iot-rollout/rollout/hubapi"
)

const configsFleet = "testdata/configs.yaml"

func getConfiguration(tb testing.TB, s *emulator.Server, id string) hubapi.Configuration {
	tb.Helper()
	resp, body := do(tb, s, "GET", "/configurations/"+id, "")
	var c hubapi.Configuration
	if resp.StatusCode != 200 || json.Unmarshal(body, &c) != nil {
		tb.Fatalf("GET /configurations/%s: %d %s", id, resp.StatusCode, body)
	}
	return c
}

func desiredOf(tb testing.TB, s *emulator.Server, id string, keys ...string) any {
	tb.Helper()
	_, body := do(tb, s, "GET", "/twins/"+id, "")
	return path(decodeTwin(tb, body), append([]string{"properties", "desired"}, keys...)...)
}

func TestConfigurationsREST(t *testing.T) {
	s := emulatortest.Start(t, "", emulator.Options{})
	const body = `{"id":"c1","priority":5,"labels":{"team":"fw"},"targetCondition":"tags.ring = 'canary'",
		"content":{"deviceContent":{"properties.desired.fw":{"version":"1"}}},
		"metrics":{"queries":{"ok":"SELECT deviceId FROM devices WHERE properties.reported.fw.version = '1'"}}}`
	resp, b := do(t, s, "PUT", "/configurations/c1", body)
	var c hubapi.Configuration
	if resp.StatusCode != 200 || json.Unmarshal(b, &c) != nil || c.ETag == "" || c.SchemaVersion != "1.0" ||
		c.CreatedTimeUTC == nil || c.CreatedTimeUTC.IsZero() || c.SystemMetrics.Queries["targetedCount"] == "" ||
		c.Labels["team"] != "fw" || c.Metrics.Results["ok"] != 0 || resp.Header.Get("ETag") != `"`+c.ETag+`"` {
		t.Fatalf("create: %d %s", resp.StatusCode, b)
	}
	resp, b = do(t, s, "PUT", "/configurations/c1", body)
	wantError(t, resp, b, 409, "ConfigurationAlreadyExists")
	resp, b = do(t, s, "PUT", "/configurations/c1", strings.Replace(body, `"priority":5`, `"priority":7`, 1), "If-Match", `"stale"`)
	wantError(t, resp, b, 412, "PreconditionFailed")
	resp, b = do(t, s, "PUT", "/configurations/c1", strings.Replace(body, `"version":"1"`, `"version":"2"`, 1), "If-Match", "*")
	wantError(t, resp, b, 400, "ArgumentInvalid")
	resp, b = do(t, s, "PUT", "/configurations/c1", strings.Replace(body, `"priority":5`, `"priority":7`, 1), "If-Match", `"`+c.ETag+`"`)
	var u hubapi.Configuration
	if resp.StatusCode != 200 || json.Unmarshal(b, &u) != nil || u.Priority != 7 || u.ETag == c.ETag || !u.CreatedTimeUTC.Equal(c.CreatedTimeUTC.Time) {
		t.Fatalf("update: %d %s", resp.StatusCode, b)
	}
	do(t, s, "PUT", "/configurations/c0", strings.Replace(body, `"id":"c1"`, `"id":"c0"`, 1))
	var list []hubapi.Configuration
	if resp, b := do(t, s, "GET", "/configurations?top=1", ""); resp.StatusCode != 200 || json.Unmarshal(b, &list) != nil || len(list) != 1 || list[0].ID != "c0" {
		t.Errorf("list top=1: %d %s", resp.StatusCode, b)
	}
	if resp, b := do(t, s, "GET", "/configurations", ""); resp.StatusCode != 200 || json.Unmarshal(b, &list) != nil || len(list) != 2 {
		t.Errorf("list: %d %s", resp.StatusCode, b)
	}

	for _, tt := range []struct {
		method, path, body string
		status             int
		code               string
	}{
		{"GET", "/configurations/nope", "", 404, "ConfigurationNotFound"},
		{"DELETE", "/configurations/nope", "", 404, "ConfigurationNotFound"},
		{"PUT", "/configurations/nope", `{"content":{"deviceContent":{"properties.desired.a":1}}}`, 404, "ConfigurationNotFound"},
		{"GET", "/configurations?top=0", "", 400, "ArgumentInvalid"},
		{"PUT", "/configurations/Upper", `{"content":{"deviceContent":{"properties.desired.a":1}}}`, 400, "ArgumentInvalid"},
		{"PUT", "/configurations/x", `{"id":"y","content":{"deviceContent":{"properties.desired.a":1}}}`, 400, "ArgumentInvalid"},
		{"PUT", "/configurations/x", `{"targetCondition":"*"}`, 400, "ArgumentNull"},
		{"PUT", "/configurations/x", `{"content":{"deviceContent":{"tags.a":1}}}`, 400, "ArgumentInvalid"},
		{"PUT", "/configurations/x", `{"content":{"deviceContent":{"properties.desired.a b":1}}}`, 400, "ArgumentInvalid"},
		{"PUT", "/configurations/x", `{"content":{"deviceContent":{"properties.desired.a":1},"moduleContent":{"properties.desired.b":1}}}`, 400, "ArgumentInvalid"},
		{"PUT", "/configurations/x", `{"priority":-1,"content":{"deviceContent":{"properties.desired.a":1}}}`, 400, "ArgumentInvalid"},
		{"PUT", "/configurations/x", `{"targetCondition":"tags.a = ","content":{"deviceContent":{"properties.desired.a":1}}}`, 400, "ArgumentInvalid"},
		{"PUT", "/configurations/x", `{"metrics":{"queries":{"m":"SELECT * FROM devices.jobs"}},"content":{"deviceContent":{"properties.desired.a":1}}}`, 400, "ArgumentInvalid"},
		{"PUT", "/configurations/x", `{"content":`, 400, "IotHubFormatError"},
		{"POST", "/configurations/x", `{}`, 405, "GenericMethodNotAllowed"},
	} {
		hdr := []string{}
		if tt.path == "/configurations/nope" && tt.method == "PUT" {
			hdr = []string{"If-Match", "*"}
		}
		resp, b := do(t, s, tt.method, tt.path, tt.body, hdr...)
		wantError(t, resp, b, tt.status, tt.code)
	}
	if resp, b := do(t, s, "DELETE", "/configurations/c1", "", "If-Match", `"`+u.ETag+`"`); resp.StatusCode != 204 {
		t.Fatalf("delete: %d %s", resp.StatusCode, b)
	}
	resp, b = do(t, s, "GET", "/configurations/c1", "")
	wantError(t, resp, b, 404, "ConfigurationNotFound")
}

func TestConfigurationsApply(t *testing.T) {
	s := emulatortest.Start(t, configsFleet, emulator.Options{ConfigurationInterval: 50 * time.Millisecond})
	// fw-eu (priority 20) beats fw-canary (10) on the canaries, which are in the eu region; the us
	// devices are targeted by neither.
	for id, want := range map[string]any{"canary-0000": "2.0", "eu-main": "2.0", "us-0000": nil} {
		if got := desiredOf(t, s, id, "fw", "version"); got != want {
			t.Errorf("%s: fw.version %v, want %v", id, got, want)
		}
	}
	if got := desiredOf(t, s, "eu-main", "fw", "channel"); got != "beta" {
		t.Errorf("a path beside the configuration's was changed: channel %v", got)
	}
	if got := desiredOf(t, s, "canary-0001", "mode"); got != "eco" {
		t.Errorf("mode %v, want eco", got)
	}
	c := getConfiguration(t, s, "fw-canary")
	if r := c.SystemMetrics.Results; r["targetedCount"] != 4 || r["appliedCount"] != 0 || c.Metrics.Results["onCanary"] != 4 {
		t.Errorf("fw-canary metrics %+v %+v", c.SystemMetrics, c.Metrics)
	}
	if r := getConfiguration(t, s, "fw-eu").SystemMetrics.Results; r["targetedCount"] != 5 || r["appliedCount"] != 5 {
		t.Errorf("fw-eu metrics %+v", r)
	}

	// A later configuration of the same priority wins the tie.
	do(t, s, "PUT", "/configurations/fw-eu-2", `{"priority":20,"targetCondition":"deviceId = 'eu-main'",
		"content":{"deviceContent":{"properties.desired.fw.version":"3.0"}}}`)
	if got := desiredOf(t, s, "eu-main", "fw", "version"); got != "3.0" {
		t.Errorf("eu-main after the tie: %v, want 3.0", got)
	}
	// A change someone else makes to a path a configuration writes is written back at its next run;
	// a path no configuration writes stays.
	do(t, s, "PATCH", "/twins/canary-0002", `{"properties":{"desired":{"fw":{"version":"9.9"},"other":1}}}`)
	waitUntil(t, func() bool { return desiredOf(t, s, "canary-0002", "fw", "version") == "2.0" })
	if got := desiredOf(t, s, "canary-0002", "other"); got != 1.0 {
		t.Errorf("other %v, want 1", got)
	}
	// A twin whose values already hold is not written again.
	_, body := do(t, s, "GET", "/twins/us-0001", "")
	before := decodeTwin(t, body)["version"]
	time.Sleep(150 * time.Millisecond)
	_, body = do(t, s, "GET", "/twins/us-0001", "")
	if after := decodeTwin(t, body)["version"]; after != before {
		t.Errorf("an untargeted twin changed version %v → %v", before, after)
	}
	// Deleting a configuration leaves the twins as they are.
	do(t, s, "DELETE", "/configurations/fw-eu", "")
	do(t, s, "DELETE", "/configurations/fw-canary", "")
	do(t, s, "PATCH", "/twins/canary-0003", `{"properties":{"desired":{"fw":{"version":"5"}}}}`)
	time.Sleep(150 * time.Millisecond)
	if got := desiredOf(t, s, "canary-0000", "fw", "version"); got != "2.0" {
		t.Errorf("canary-0000 after the delete: %v", got)
	}
	if got := desiredOf(t, s, "canary-0003", "fw", "version"); got != "5" {
		t.Errorf("a deleted configuration still writes: %v", got)
	}
}

func TestConfigurationsFleetErrors(t *testing.T) {
	for name, tt := range map[string]struct{ src, want string }{
		"unknown key":  {"configurations:\n  - {id: a, prio: 1, content: {deviceContent: {properties.desired.a: 1}}}\n", "prio"},
		"bad path":     {"configurations:\n  - {id: a, content: {deviceContent: {tags.a: 1}}}\n", "does not start with properties.desired."},
		"no content":   {"configurations:\n  - {id: a, targetCondition: '*'}\n", "content is required"},
		"listed twice": {"configurations:\n  - {id: a, content: {deviceContent: {properties.desired.a: 1}}}\n  - {id: a, content: {deviceContent: {properties.desired.a: 1}}}\n", "listed twice"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := emulator.ParseFleet("f.yaml", []byte(tt.src))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one saying %q", err, tt.want)
			}
		})
	}
}

func TestConfigurationsInDataFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "hub.data")
	s := emulatortest.Start(t, configsFleet, emulator.Options{DataFile: file})
	before := getConfiguration(t, s, "fw-eu")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = emulatortest.Start(t, "", emulator.Options{DataFile: file})
	after := getConfiguration(t, s, "fw-eu")
	if after.ETag != before.ETag || !after.CreatedTimeUTC.Equal(before.CreatedTimeUTC.Time) || after.Priority != 20 ||
		after.Content.DeviceContent["properties.desired.mode"] != "eco" {
		t.Errorf("after a restart: %+v, want %+v", after, before)
	}
}
