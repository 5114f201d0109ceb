package emulator_test

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/iot-rollout/rollout/emulator"
	"github.com/iot-rollout/rollout/emulator/emulatortest"
	"github.com/iot-rollout/rollout/hubapi"
)

const modulesFleet = "testdata/modules.yaml"

func startModules(tb testing.TB, opts emulator.Options) *emulator.Server {
	tb.Helper()
	return emulatortest.Start(tb, modulesFleet, opts)
}

func TestModuleRegistry(t *testing.T) {
	s := startModules(t, emulator.Options{})
	resp, body := do(t, s, "GET", "/devices/gw-1/modules", "")
	var mods []hubapi.Module
	if resp.StatusCode != 200 || json.Unmarshal(body, &mods) != nil || len(mods) != 2 {
		t.Fatalf("list: %d %s", resp.StatusCode, body)
	}
	if mods[0].ModuleID != "sensor" || mods[0].DeviceID != "gw-1" || mods[1].ManagedBy != "IotEdge" ||
		mods[0].Authentication.SymmetricKey.PrimaryKey == "" || mods[0].ConnectionState != "Connected" {
		t.Errorf("modules %s", body)
	}
	if mods[0].Authentication.SymmetricKey.PrimaryKey == deviceKey(t, s, "gw-1") {
		t.Error("a module has its device's key")
	}

	resp, body = do(t, s, "PUT", "/devices/gw-2/modules/extra", `{"moduleId":"extra","deviceId":"gw-2"}`)
	var m hubapi.Module
	if resp.StatusCode != 200 || json.Unmarshal(body, &m) != nil || m.ETag == "" || resp.Header.Get("ETag") != `"`+m.ETag+`"` {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, s, "PUT", "/devices/gw-2/modules/extra", `{"moduleId":"extra"}`)
	wantError(t, resp, body, 409, "ModuleAlreadyExistsOnDevice")
	resp, body = do(t, s, "PUT", "/devices/gw-2/modules/extra", `{"moduleId":"extra","managedBy":"me"}`, "If-Match", `"stale"`)
	wantError(t, resp, body, 412, "PreconditionFailed")
	resp, body = do(t, s, "PUT", "/devices/gw-2/modules/extra", `{"moduleId":"extra","managedBy":"me"}`, "If-Match", `"`+m.ETag+`"`)
	var updated hubapi.Module
	if resp.StatusCode != 200 || json.Unmarshal(body, &updated) != nil || updated.ManagedBy != "me" || updated.ETag == m.ETag {
		t.Fatalf("update: %d %s", resp.StatusCode, body)
	}

	for _, tt := range []struct {
		method, path, body string
		status             int
		code               string
	}{
		{"GET", "/devices/gw-2/modules/nope", "", 404, "ModuleNotFound"},
		{"GET", "/devices/nobody/modules", "", 404, "DeviceNotFound"},
		{"GET", "/devices/nobody/modules/sensor", "", 404, "DeviceNotFound"},
		{"PUT", "/devices/gw-2/modules/bad%20id", `{}`, 400, "ArgumentInvalid"},
		{"PUT", "/devices/gw-2/modules/a", `{"moduleId":"b"}`, 400, "ArgumentInvalid"},
		{"PUT", "/devices/gw-2/modules/a", `{"moduleId":`, 400, "IotHubFormatError"},
		{"PUT", "/devices/gw-2/modules/a", `{"authentication":{"symmetricKey":{"primaryKey":"short"}}}`, 400, "ArgumentInvalid"},
		{"GET", "/twins/gw-2/modules/nope", "", 404, "ModuleNotFound"},
		{"GET", "/twins/gw-2%2Fsensor", "", 400, "ArgumentInvalid"},
		{"POST", "/twins/gw-2/modules/nope/methods", `{"methodName":"x"}`, 404, "ModuleNotFound"},
		{"DELETE", "/devices/gw-2/modules/sensor", "", 412, "PreconditionFailed"},
	} {
		hdr := []string{}
		if tt.method == "DELETE" {
			hdr = []string{"If-Match", `"stale"`}
		}
		resp, body := do(t, s, tt.method, tt.path, tt.body, hdr...)
		wantError(t, resp, body, tt.status, tt.code)
	}

	if resp, body := do(t, s, "DELETE", "/devices/gw-2/modules/extra", ""); resp.StatusCode != 204 {
		t.Fatalf("delete: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, s, "GET", "/devices/gw-2/modules/extra", "")
	wantError(t, resp, body, 404, "ModuleNotFound")
	// Deleting a device deletes its modules: a device created again with its id has none.
	if resp, body := do(t, s, "DELETE", "/devices/gw-1", ""); resp.StatusCode != 204 {
		t.Fatalf("delete device: %d %s", resp.StatusCode, body)
	}
	do(t, s, "PUT", "/devices/gw-1", `{"deviceId":"gw-1"}`)
	if resp, body := do(t, s, "GET", "/devices/gw-1/modules", ""); resp.StatusCode != 200 || string(body) != "[]" {
		t.Errorf("modules of a re-created device: %d %s", resp.StatusCode, body)
	}
}

func TestModuleTwins(t *testing.T) {
	s := startModules(t, emulator.Options{})
	resp, body := do(t, s, "GET", "/twins/gw-1/modules/sensor", "")
	if resp.StatusCode != 200 {
		t.Fatalf("GET: %d %s", resp.StatusCode, body)
	}
	tw := decodeTwin(t, body)
	if tw["deviceId"] != "gw-1" || tw["moduleId"] != "sensor" || path(tw, "tags", "kind") != "temp" ||
		path(tw, "properties", "desired", "rate") != 5.0 || tw["capabilities"] != nil {
		t.Errorf("module twin %s", body)
	}
	etag := tw["etag"].(string)
	resp, body = do(t, s, "PATCH", "/twins/gw-1/modules/sensor", `{"properties":{"desired":{"rate":10}}}`, "If-Match", `"stale"`)
	wantError(t, resp, body, 412, "PreconditionFailed")
	resp, body = do(t, s, "PATCH", "/twins/gw-1/modules/sensor", `{"tags":{"floor":2},"properties":{"desired":{"rate":10}}}`, "If-Match", `"`+etag+`"`)
	tw = decodeTwin(t, body)
	if resp.StatusCode != 200 || path(tw, "properties", "desired", "rate") != 10.0 || path(tw, "tags", "floor") != 2.0 || tw["etag"] == etag {
		t.Fatalf("PATCH: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, s, "PUT", "/twins/gw-1/modules/sensor", `{"properties":{"desired":{"mode":"fast"}}}`)
	tw = decodeTwin(t, body)
	if resp.StatusCode != 200 || path(tw, "properties", "desired", "rate") != nil || path(tw, "properties", "desired", "mode") != "fast" || tw["tags"] != nil {
		t.Fatalf("PUT: %d %s", resp.StatusCode, body)
	}
	// The device's own twin is untouched.
	_, body = do(t, s, "GET", "/twins/gw-1", "")
	if tw := decodeTwin(t, body); tw["moduleId"] != nil || path(tw, "properties", "desired", "mode") != nil || path(tw, "tags", "site") != "lab" {
		t.Errorf("device twin %s", body)
	}
	resp, body = do(t, s, "PATCH", "/twins/gw-1/modules/sensor", `{"properties":{"desired":{"bad.key":1}}}`)
	wantError(t, resp, body, 400, "ArgumentInvalid")
	// A simulated module reports its desired values back, as its device would.
	waitUntil(t, func() bool {
		_, body := do(t, s, "GET", "/twins/gw-1/modules/sensor", "")
		return path(decodeTwin(t, body), "properties", "reported", "mode") == "fast"
	})
}

func TestModuleQueries(t *testing.T) {
	s := startModules(t, emulator.Options{})
	for _, tt := range []struct {
		query string
		want  []string // deviceId/moduleId of the rows, in order
	}{
		{"SELECT * FROM devices.modules", []string{"gw-1/sensor", "gw-1/camera", "gw-2/sensor", "gw-off/sensor"}},
		{"SELECT * FROM devices.modules WHERE moduleId = 'sensor' AND properties.reported.state = 'idle'", []string{"gw-2/sensor"}},
		{"SELECT * FROM devices.modules WHERE tags.kind = 'temp' AND deviceId IN ['gw-1']", []string{"gw-1/sensor"}},
		{"SELECT * FROM devices.modules WHERE connectionState = 'Disconnected'", []string{"gw-off/sensor"}},
		{"SELECT * FROM devices WHERE IS_DEFINED(moduleId)", nil},
	} {
		var rows []hubapi.Twin
		resp, body := do(t, s, "POST", "/devices/query", `{"query":`+jsonString(tt.query)+`}`)
		if resp.StatusCode != 200 || json.Unmarshal(body, &rows) != nil {
			t.Fatalf("%s: %d %s", tt.query, resp.StatusCode, body)
		}
		var got []string
		for _, r := range rows {
			got = append(got, r.DeviceID+"/"+r.ModuleID)
		}
		if len(got) != len(tt.want) || len(got) > 0 && !equalStrings(got, tt.want) {
			t.Errorf("%s: %v, want %v", tt.query, got, tt.want)
		}
	}
	_, body := do(t, s, "POST", "/devices/query", `{"query":"SELECT COUNT() AS n FROM devices.modules WHERE moduleId = 'sensor'"}`)
	if string(body) != `[{"n":3}]` {
		t.Errorf("count: %s", body)
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// moduleKey is a module's primary key, read from the registry as a back end does.
func moduleKey(tb testing.TB, s *emulator.Server, id, mid string) string {
	tb.Helper()
	resp, body := do(tb, s, "GET", "/devices/"+id+"/modules/"+mid, "")
	var m hubapi.Module
	if resp.StatusCode != 200 || json.Unmarshal(body, &m) != nil {
		tb.Fatalf("GET module %s/%s: %d %s", id, mid, resp.StatusCode, body)
	}
	return m.Authentication.SymmetricKey.PrimaryKey
}

// connectModule connects as module mid of device id with the module's registry key.
func connectModule(tb testing.TB, s *emulator.Server, id, mid string) *device {
	tb.Helper()
	host := mqttHost(s)
	d, err := dial(tb, s, id+"/"+mid, host+"/"+id+"/"+mid+"/?api-version=2021-04-12",
		deviceToken(host+"/devices/"+id+"/modules/"+mid, moduleKey(tb, s, id, mid), time.Now().Add(time.Hour)))
	if err != nil {
		tb.Fatalf("connect %s/%s: %v", id, mid, err)
	}
	return d
}

func TestModuleMQTTAuthentication(t *testing.T) {
	s := startModules(t, emulator.Options{MQTTAddr: "127.0.0.1:0"})
	host := mqttHost(s)
	mkey, dkey := moduleKey(t, s, "gw-1", "sensor"), deviceKey(t, s, "gw-1")
	user := host + "/gw-1/sensor/?api-version=2021-04-12"
	sr := host + "/devices/gw-1/modules/sensor"
	cs, _ := hubapi.ParseConnectionString(s.ConnectionString())
	hour := time.Now().Add(time.Hour)
	for _, tt := range []struct {
		name, clientID, user, pass string
		ok                         bool
	}{
		{"module key", "gw-1/sensor", user, deviceToken(sr, mkey, hour), true},
		{"policy token", "gw-1/sensor", user, cs.SASToken(hour), true},
		{"device key for the module", "gw-1/sensor", user, deviceToken(sr, dkey, hour), false},
		{"module key for the device's resource", "gw-1/sensor", user, deviceToken(host+"/devices/gw-1", mkey, hour), false},
		{"another module's resource", "gw-1/sensor", user, deviceToken(host+"/devices/gw-1/modules/camera", mkey, hour), false},
		{"client id of the device", "gw-1", user, deviceToken(sr, mkey, hour), false},
		{"unknown module", "gw-1/nope", host + "/gw-1/nope/?api-version=2021-04-12", deviceToken(host+"/devices/gw-1/modules/nope", mkey, hour), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d, err := dial(t, s, tt.clientID, tt.user, tt.pass)
			if tt.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				d.c.Disconnect(0)
				return
			}
			if !errors.Is(err, packets.ErrorRefusedNotAuthorised) {
				t.Fatalf("error %v, want CONNACK 5 (not authorised)", err)
			}
		})
	}
}

func TestModuleMQTT(t *testing.T) {
	s := startModules(t, emulator.Options{MQTTAddr: "127.0.0.1:0"})
	d := connectModule(t, s, "gw-1", "sensor")
	d.subscribe(t, "$iothub/twin/res/#", "$iothub/twin/PATCH/properties/desired/#")
	answerMethods(t, d, 202, `{"module":"sensor"}`)

	d.publish(t, "$iothub/twin/GET/?$rid=1", 0, " ")
	var doc struct{ Desired, Reported map[string]any }
	if m := d.waitFor(t, "$iothub/twin/res/", 1); json.Unmarshal(m.Payload(), &doc) != nil || doc.Desired["rate"] != 5.0 || doc.Reported["state"] != "scanning" {
		t.Fatalf("twin GET %s: %s", m.Topic(), m.Payload())
	}
	d.publish(t, "$iothub/twin/PATCH/properties/reported/?$rid=2", 0, `{"state":"busy"}`)
	d.waitFor(t, "$iothub/twin/res/204/", 1)
	_, body := do(t, s, "GET", "/twins/gw-1/modules/sensor", "")
	tw := decodeTwin(t, body)
	if path(tw, "properties", "reported", "state") != "busy" || tw["connectionState"] != "Connected" {
		t.Errorf("module twin after the reported patch: %s", body)
	}
	_, body = do(t, s, "GET", "/twins/gw-1", "")
	if path(decodeTwin(t, body), "properties", "reported", "state") != nil {
		t.Errorf("the module's report reached its device's twin: %s", body)
	}

	do(t, s, "PATCH", "/twins/gw-1/modules/sensor", `{"properties":{"desired":{"rate":1}}}`)
	m := d.waitFor(t, "$iothub/twin/PATCH/properties/desired/", 1)
	if string(m.Payload()) != `{"$version":2,"rate":1}` {
		t.Errorf("desired push %s: %s", m.Topic(), m.Payload())
	}
	// A change to the device's twin does not reach the module.
	do(t, s, "PATCH", "/twins/gw-1", `{"properties":{"desired":{"x":1}}}`)

	resp, body := do(t, s, "POST", "/twins/gw-1/modules/sensor/methods", `{"methodName":"scan","payload":{},"responseTimeoutInSeconds":5}`)
	var res hubapi.MethodResult
	if resp.StatusCode != 200 || json.Unmarshal(body, &res) != nil || res.Status != 202 || string(res.Payload) != `{"module":"sensor"}` {
		t.Fatalf("module method: %d %s", resp.StatusCode, body)
	}
	// The module's telemetry topic is its own; the device's is refused.
	d.publish(t, "devices/gw-1/modules/sensor/messages/events/", 1, `{"t":1}`)
	waitUntil(t, func() bool { return s.Stats().Totals.Telemetry == 1 })
	if got := d.received("$iothub/twin/PATCH/properties/desired/"); len(got) != 1 {
		t.Errorf("the module got %d desired pushes, want 1", len(got))
	}
	live, _ := s.Connections()
	if len(live) != 1 || live[0].DeviceID != "gw-1" || live[0].ModuleID != "sensor" {
		t.Errorf("connections %+v", live)
	}
	d.c.Publish("devices/gw-1/messages/events/", 1, false, "x")
	d.wantClosed(t)
	waitUntil(t, func() bool {
		_, body := do(t, s, "GET", "/twins/gw-1/modules/sensor", "")
		return decodeTwin(t, body)["connectionState"] == "Disconnected"
	})
	// Deleting the module closes a connection it has.
	d = connectModule(t, s, "gw-1", "sensor")
	do(t, s, "DELETE", "/devices/gw-1/modules/sensor", "")
	d.wantClosed(t)
}

func TestModulesInDataFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "hub.data")
	s := startModules(t, emulator.Options{DataFile: file})
	do(t, s, "PATCH", "/twins/gw-2/modules/sensor", `{"properties":{"desired":{"rate":3}}}`)
	do(t, s, "PUT", "/devices/gw-2/modules/extra", `{"managedBy":"me"}`)
	key := moduleKey(t, s, "gw-2", "extra")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = emulatortest.Start(t, "", emulator.Options{DataFile: file})
	_, body := do(t, s, "GET", "/twins/gw-2/modules/sensor", "")
	if path(decodeTwin(t, body), "properties", "desired", "rate") != 3.0 {
		t.Errorf("module twin after a restart: %s", body)
	}
	if got := moduleKey(t, s, "gw-2", "extra"); got != key {
		t.Errorf("module key %s after a restart, want %s", got, key)
	}
	_, body = do(t, s, "GET", "/devices/gw-1/modules", "")
	var mods []hubapi.Module
	if json.Unmarshal(body, &mods) != nil || len(mods) != 2 || mods[1].ManagedBy != "IotEdge" {
		t.Errorf("modules after a restart: %s", body)
	}
}
