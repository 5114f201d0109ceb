package emulator_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/iot-rollout/rollout/emulator"
)

// FuzzParseFleet checks that no fleet file makes the parser panic, and that what it accepts starts.
func FuzzParseFleet(f *testing.F) {
	for _, seed := range []string{
		"groups:\n  - {name: a, count: 3, tags: {x: 1}, behavior: {offline: 50%}}\n",
		"devices:\n  - {deviceId: d1, properties: {desired: {a: {b: 1}}}}\n",
		"defaults: {behavior: {converge: {delay: 1s, failure: 10%}}}\n",
		"groups: [{name: a, count: 1, idPrefix: ''}]\ndevices: [{deviceId: '0000'}]",
		"groups:\n  - name: a\n    count: 2\n    tags: {list: [1, 2, {a: b}]}\n",
		"{}", "[]", "groups: 3", "devices: [{deviceId: x, status: disabled, capabilities: {iotEdge: true}}]",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, src string) {
		fl, err := emulator.ParseFleet("fuzz.yaml", []byte(src))
		if err != nil {
			return
		}
		total := len(fl.Devices)
		for _, g := range fl.Groups {
			total += g.Count
		}
		if total > 10000 {
			return
		}
		s, err := emulator.Start(t.Context(), emulator.Options{Fleet: fl})
		if err == nil {
			s.Close()
		}
	})
}

// FuzzRequests sends arbitrary bodies to every endpoint: the emulator must answer with the hub's
// errors, never a 5xx of its own.
func FuzzRequests(f *testing.F) {
	for _, seed := range []string{
		``, `{}`, `null`, `[]`, `"x"`, `{"tags":{"a":{"b":null}}}`, `{"properties":{"desired":{"$metadata":{},"a":[1,{"b":2}]}}}`,
		`{"jobId":"f1","type":"scheduleUpdateTwin","queryCondition":"tags.a = 1","updateTwin":{"etag":"*","tags":{"a":1}}}`,
		`{"jobId":"f1","type":"scheduleDeviceMethod","queryCondition":"((","cloudToDeviceMethod":{"methodName":"m","payload":[1]}}`,
		`{"query":"SELECT deviceId, COUNT() FROM devices GROUP BY deviceId"}`, `{"query":"SELECT * FROM devices.jobs WHERE devices.jobs.status = 1"}`,
		`{"methodName":"m","payload":"\u0000","responseTimeoutInSeconds":5}`, `{"deviceId":"Device-1","status":"disabled"}`,
	} {
		for i := range endpoints {
			f.Add(uint8(i), seed)
		}
	}
	s := start(f, emulator.Options{})
	f.Fuzz(func(t *testing.T, ep uint8, body string) {
		e := endpoints[int(ep)%len(endpoints)]
		resp, b := do(t, s, e.method, e.path, body, "If-Match", "*")
		if resp.StatusCode >= 500 || resp.StatusCode == 0 {
			t.Fatalf("%s %s %q: %d %s", e.method, e.path, body, resp.StatusCode, b)
		}
		if resp.StatusCode >= 400 && resp.Header.Get("iothub-errorcode") == "" {
			t.Fatalf("%s %s: error without iothub-errorcode: %s", e.method, e.path, b)
		}
		if resp.StatusCode == http.StatusOK && !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Fatalf("%s %s: 200 without JSON content type", e.method, e.path)
		}
	})
}

var endpoints = []struct{ method, path string }{
	{"PATCH", "/twins/Device-1"}, {"PUT", "/twins/eu-0001"}, {"POST", "/twins/eu-0002/methods"},
	{"PUT", "/devices/fuzz-1"}, {"POST", "/devices/query"}, {"PUT", "/jobs/v2/f1"}, {"PUT", "/jobs/v2/f2"},
}
