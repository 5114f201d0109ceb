package emulator_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/emulator"
	"github.com/iot-rollout/rollout/emulator/emulatortest"
	"github.com/iot-rollout/rollout/hubapi"
)

const smallFleet = "testdata/small.yaml"

func start(tb testing.TB, opts emulator.Options) *emulator.Server {
	tb.Helper()
	return emulatortest.Start(tb, smallFleet, opts)
}

func do(tb testing.TB, s *emulator.Server, method, path, body string, hdr ...string) (*http.Response, []byte) {
	tb.Helper()
	h := http.Header{}
	for i := 0; i+1 < len(hdr); i += 2 {
		h.Set(hdr[i], hdr[i+1])
	}
	return emulatortest.Do(tb, s, method, path, body, h)
}

// wantError checks a hub error: status, iothub-errorcode header and shape A body.
func wantError(tb testing.TB, resp *http.Response, body []byte, status int, code string) {
	tb.Helper()
	if resp.StatusCode != status {
		tb.Fatalf("status %d, want %d; body %s", resp.StatusCode, status, body)
	}
	if got := resp.Header.Get("iothub-errorcode"); got != code {
		tb.Errorf("iothub-errorcode %q, want %q", got, code)
	}
	var eb hubapi.ErrorBody
	if err := json.Unmarshal(body, &eb); err != nil {
		tb.Fatalf("error body %s: %v", body, err)
	}
	if !strings.HasPrefix(eb.Message, "ErrorCode:"+code+";") {
		tb.Errorf("Message %q does not start with ErrorCode:%s;", eb.Message, code)
	}
	if !strings.HasPrefix(eb.ExceptionMessage, "Tracking ID:") {
		tb.Errorf("ExceptionMessage %q has no tracking id", eb.ExceptionMessage)
	}
}

func decodeTwin(tb testing.TB, body []byte) map[string]any {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		tb.Fatalf("twin %s: %v", body, err)
	}
	return m
}

func path(m map[string]any, keys ...string) any {
	var v any = m
	for _, k := range keys {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[k]
	}
	return v
}

func TestGetTwin(t *testing.T) {
	s := start(t, emulator.Options{})
	resp, body := do(t, s, "GET", "/twins/Device-1", "")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q", ct)
	}
	tw := decodeTwin(t, body)
	for _, c := range []struct {
		keys []string
		want any
	}{
		{[]string{"deviceId"}, "Device-1"},
		{[]string{"etag"}, "AAAAAAAAAAE="},
		{[]string{"version"}, 1.0},
		{[]string{"status"}, "enabled"},
		{[]string{"connectionState"}, "Connected"},
		{[]string{"tags", "building"}, "43"},
		{[]string{"properties", "desired", "mode"}, "eco"},
		{[]string{"properties", "desired", "$version"}, 1.0},
		{[]string{"properties", "reported", "firmware", "version"}, "1.0.0"},
	} {
		if got := path(tw, c.keys...); got != c.want {
			t.Errorf("%v = %v, want %v", c.keys, got, c.want)
		}
	}
	if path(tw, "properties", "desired", "$metadata", "$lastUpdated") == nil {
		t.Errorf("no desired $metadata.$lastUpdated in %s", body)
	}
	if path(tw, "properties", "desired", "$metadata", "mode", "$lastUpdatedVersion") != 1.0 {
		t.Errorf("no $lastUpdatedVersion for mode in %s", body)
	}
}

func TestTwinPatchEtagsAndVersions(t *testing.T) {
	s := start(t, emulator.Options{})
	resp, body := do(t, s, "PATCH", "/twins/Device-1", `{"tags":{"ring":"lab","building":null},"properties":{"desired":{"fw":{"version":"2.4.0"}}}}`, "If-Match", `"AAAAAAAAAAE="`)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	tw := decodeTwin(t, body)
	if tw["etag"] != "AAAAAAAAAAI=" || tw["version"] != 2.0 {
		t.Errorf("etag %v version %v, want AAAAAAAAAAI= and 2", tw["etag"], tw["version"])
	}
	if path(tw, "tags", "building") != nil || path(tw, "tags", "ring") != "lab" {
		t.Errorf("tags %v: want building removed and ring lab", tw["tags"])
	}
	if path(tw, "properties", "desired", "mode") != "eco" || path(tw, "properties", "desired", "fw", "version") != "2.4.0" {
		t.Errorf("desired %v: want mode kept and fw added", path(tw, "properties", "desired"))
	}
	if path(tw, "properties", "desired", "$version") != 2.0 {
		t.Errorf("desired $version %v, want 2", path(tw, "properties", "desired", "$version"))
	}
	// The old etag is stale now.
	resp, body = do(t, s, "PATCH", "/twins/Device-1", `{"tags":{"x":"y"}}`, "If-Match", `"AAAAAAAAAAE="`)
	wantError(t, resp, body, 412, "PreconditionFailed")
	// Unconditional forms.
	for _, im := range []string{"*", `"*"`, ""} {
		resp, body = do(t, s, "PATCH", "/twins/Device-1", `{"tags":{"x":"y"}}`, "If-Match", im)
		if resp.StatusCode != 200 {
			t.Errorf("If-Match %q: status %d: %s", im, resp.StatusCode, body)
		}
	}
	// PUT replaces tags and desired wholesale.
	resp, body = do(t, s, "PUT", "/twins/Device-1", `{"tags":{"only":"this"},"properties":{"desired":{"a":1}}}`)
	if resp.StatusCode != 200 {
		t.Fatalf("PUT status %d: %s", resp.StatusCode, body)
	}
	tw = decodeTwin(t, body)
	if tags := tw["tags"].(map[string]any); len(tags) != 1 || tags["only"] != "this" {
		t.Errorf("tags after PUT %v", tags)
	}
	if path(tw, "properties", "desired", "mode") != nil || path(tw, "properties", "desired", "a") != 1.0 {
		t.Errorf("desired after PUT %v", path(tw, "properties", "desired"))
	}
}

func TestConvergence(t *testing.T) {
	s := start(t, emulator.Options{})
	resp, body := do(t, s, "PATCH", "/twins/eu-0001", `{"properties":{"desired":{"fw":{"version":"9"}}}}`)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, body = do(t, s, "GET", "/twins/eu-0001", "")
		tw := decodeTwin(t, body)
		if path(tw, "properties", "reported", "fw", "version") == "9" {
			if path(tw, "properties", "reported", "$version") != 2.0 {
				t.Errorf("reported $version %v, want 2", path(tw, "properties", "reported", "$version"))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("device never reported the desired value: %s", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if ds, ok := s.DeviceStats("eu-0001"); !ok || ds.TwinPatches != 1 || ds.Reports != 1 {
		t.Errorf("stats %+v, want 1 patch and 1 report", ds)
	}
}

func TestBadInput(t *testing.T) {
	s := start(t, emulator.Options{})
	cs, _ := hubapi.ParseConnectionString(s.ConnectionString())
	expired := cs.SASToken(time.Now().Add(-time.Hour))
	wrongKey, _ := hubapi.ParseConnectionString("HostName=127.0.0.1;SharedAccessKeyName=iothubowner;SharedAccessKey=d3Jvbmcta2V5LXdyb25nLWtleQ==")
	big := `{"tags":{"big":"` + strings.Repeat("x", 4000) + `","big2":"` + strings.Repeat("y", 4000) + `","big3":"` + strings.Repeat("z", 1000) + `"}}`
	for _, c := range []struct {
		name, method, path, body string
		hdr                      []string
		status                   int
		code                     string
	}{
		{"malformed json", "PATCH", "/twins/Device-1", `{"tags":`, nil, 400, "IotHubFormatError"},
		{"wrong type", "PATCH", "/twins/Device-1", `{"tags":"x"}`, nil, 400, "ArgumentInvalid"},
		{"dotted name", "PATCH", "/twins/Device-1", `{"tags":{"a.b":1}}`, nil, 400, "ArgumentInvalid"},
		{"dollar name", "PATCH", "/twins/Device-1", `{"properties":{"desired":{"a":{"$b":1}}}}`, nil, 400, "ArgumentInvalid"},
		{"space name", "PATCH", "/twins/Device-1", `{"tags":{"a b":1}}`, nil, 400, "ArgumentInvalid"},
		{"oversized tags", "PATCH", "/twins/Device-1", big, nil, 400, "ArgumentInvalid"},
		{"too deep", "PATCH", "/twins/Device-1", `{"tags":{"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":{"i":{"j":{"k":1}}}}}}}}}}}}`, nil, 400, "ArgumentInvalid"},
		{"huge integer", "PATCH", "/twins/Device-1", `{"tags":{"n":9007199254740993}}`, nil, 400, "ArgumentInvalid"},
		{"unknown twin", "GET", "/twins/nope", "", nil, 404, "DeviceNotFound"},
		{"unknown twin patch", "PATCH", "/twins/nope", `{"tags":{"a":1}}`, nil, 404, "DeviceNotFound"},
		{"unknown device", "GET", "/devices/nope", "", nil, 404, "DeviceNotFound"},
		{"unknown method device", "POST", "/twins/nope/methods", `{"methodName":"m"}`, nil, 404, "DeviceNotFound"},
		{"bad etag", "PATCH", "/twins/Device-1", `{"tags":{"a":1}}`, []string{"If-Match", `"AAAAAAAAAAk="`}, 412, "PreconditionFailed"},
		{"expired token", "GET", "/twins/Device-1", "", []string{"Authorization", expired}, 401, "IotHubUnauthorizedAccess"},
		{"wrong key", "GET", "/twins/Device-1", "", []string{"Authorization", wrongKey.SASToken(time.Now().Add(time.Hour))}, 401, "IotHubUnauthorizedAccess"},
		{"bearer", "GET", "/twins/Device-1", "", []string{"Authorization", "Bearer abc"}, 401, "IotHubUnauthorizedAccess"},
		{"garbage token", "GET", "/twins/Device-1", "", []string{"Authorization", "SharedAccessSignature sr"}, 401, "IotHubUnauthorizedAccess"},
		{"wrong job type", "PUT", "/jobs/v2/j1", `{"jobId":"j1","type":"scheduleTwinUpdate","queryCondition":"*","updateTwin":{"etag":"*","tags":{"a":1}}}`, nil, 400, "GenericBadRequest"},
		{"job malformed", "PUT", "/jobs/v2/j1", `{"jobId":`, nil, 400, "IotHubFormatError"},
		{"job etag", "PUT", "/jobs/v2/j1", `{"jobId":"j1","type":"scheduleUpdateTwin","queryCondition":"*","updateTwin":{"etag":"AAAA","tags":{"a":1}}}`, nil, 412, "PreconditionFailed"},
		{"job no condition", "PUT", "/jobs/v2/j1", `{"jobId":"j1","type":"scheduleDeviceMethod","cloudToDeviceMethod":{"methodName":"m"}}`, nil, 400, "ArgumentNull"},
		{"job no method", "PUT", "/jobs/v2/j1", `{"jobId":"j1","type":"scheduleDeviceMethod","queryCondition":"*"}`, nil, 400, "ArgumentNull"},
		{"job top-level desired", "PUT", "/jobs/v2/j1", `{"jobId":"j1","type":"scheduleUpdateTwin","queryCondition":"*","updateTwin":{"etag":"*","desired":{"a":1}}}`, nil, 400, "ArgumentInvalid"},
		{"job bad id", "PUT", "/jobs/v2/bad_id", `{"type":"scheduleDeviceMethod"}`, nil, 400, "ArgumentInvalid"},
		{"job condition too long", "PUT", "/jobs/v2/j1", `{"jobId":"j1","type":"scheduleDeviceMethod","cloudToDeviceMethod":{"methodName":"m"},"queryCondition":"deviceId = '` + strings.Repeat("a", 9000) + `'"}`, nil, 412, "PreconditionFailed"},
		{"unknown job", "GET", "/jobs/v2/nope", "", nil, 404, "JobNotFound"},
		{"cancel unknown job", "POST", "/jobs/v2/nope/cancel", "", nil, 404, "JobNotFound"},
		{"method timeout out of range", "POST", "/twins/Device-1/methods", `{"methodName":"m","responseTimeoutInSeconds":1000}`, nil, 400, "ArgumentInvalid"},
		{"method malformed", "POST", "/twins/Device-1/methods", `[1,2`, nil, 400, "IotHubFormatError"},
		{"device exists", "PUT", "/devices/Device-1", `{"deviceId":"Device-1"}`, nil, 409, "DeviceAlreadyExists"},
		{"device bad id", "PUT", "/devices/bad%2Fid", `{"deviceId":"bad/id"}`, nil, 400, "ArgumentInvalid"},
		{"device id mismatch", "PUT", "/devices/a1", `{"deviceId":"a2"}`, nil, 400, "ArgumentInvalid"},
		{"empty body", "PUT", "/devices/a1", ``, nil, 400, "ArgumentNull"},
		{"unknown path", "GET", "/nothing/here", "", nil, 404, "GenericNotFound"},
		{"module twin", "GET", "/twins/Device-1/modules/m1", "", nil, 404, "ModuleNotFound"},
		{"module of unknown device", "GET", "/twins/nope/modules/m1", "", nil, 404, "DeviceNotFound"},
		{"method payload too large", "POST", "/twins/Device-1/methods", `{"methodName":"m","payload":"` + strings.Repeat("p", 130*1024) + `"}`, nil, 413, "MessageTooLarge"},
		{"body too large", "PATCH", "/twins/Device-1", `{"tags":{"a":"` + strings.Repeat("p", 1100*1024) + `"}}`, nil, 413, "MessageTooLarge"},
		{"wrong method", "DELETE", "/twins/Device-1", "", nil, 405, "GenericMethodNotAllowed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, body := do(t, s, c.method, c.path, c.body, c.hdr...)
			wantError(t, resp, body, c.status, c.code)
		})
	}
	// The bad input above changed nothing.
	_, body := do(t, s, "GET", "/twins/Device-1", "")
	if tw := decodeTwin(t, body); tw["version"] != 1.0 {
		t.Errorf("twin changed by rejected writes: %s", body)
	}
	if st := s.Stats(); st.Errors["ServerError"] != 0 {
		t.Errorf("the emulator answered %d requests with its own ServerError", st.Errors["ServerError"])
	}
}

func TestMissingAPIVersion(t *testing.T) {
	s := start(t, emulator.Options{})
	cs, _ := hubapi.ParseConnectionString(s.ConnectionString())
	req, _ := http.NewRequest("GET", s.URL()+"/twins/Device-1", nil)
	req.Header.Set("Authorization", cs.SASToken(time.Now().Add(time.Hour)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 || resp.Header.Get("iothub-errorcode") != "InvalidProtocolVersion" {
		t.Errorf("status %d code %q, want 400 InvalidProtocolVersion", resp.StatusCode, resp.Header.Get("iothub-errorcode"))
	}
}

func TestDeviceRegistry(t *testing.T) {
	s := start(t, emulator.Options{})
	resp, body := do(t, s, "PUT", "/devices/new-1", `{"deviceId":"new-1","authentication":{"type":"sas","symmetricKey":{"primaryKey":"","secondaryKey":""}}}`)
	if resp.StatusCode != 200 {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	var d hubapi.Device
	if err := json.Unmarshal(body, &d); err != nil {
		t.Fatal(err)
	}
	if d.DeviceID != "new-1" || d.Authentication == nil || d.Authentication.SymmetricKey.PrimaryKey == "" || d.Authentication.SymmetricKey.SecondaryKey == "" {
		t.Errorf("created device %s: want generated keys", body)
	}
	resp, body = do(t, s, "GET", "/devices/new-1", "")
	if resp.StatusCode != 200 || resp.Header.Get("ETag") == "" {
		t.Errorf("get: %d etag %q %s", resp.StatusCode, resp.Header.Get("ETag"), body)
	}
	// An update is held to the key rule as a create is, and the refusal never echoes the key.
	for _, hdr := range [][]string{nil, {"If-Match", "*"}} {
		id := "bad-key-1"
		if hdr != nil {
			id = "new-1"
		}
		resp, body = do(t, s, "PUT", "/devices/"+id, `{"deviceId":"`+id+`","authentication":{"type":"sas","symmetricKey":{"primaryKey":"c2hvcnQtc2VjcmV0","secondaryKey":""}}}`, hdr...)
		wantError(t, resp, body, 400, "ArgumentInvalid")
		if strings.Contains(string(body), "c2hvcnQtc2VjcmV0") {
			t.Errorf("key refusal echoes the key: %s", body)
		}
	}
	resp, body = do(t, s, "GET", "/devices/", "")
	var list []hubapi.Device
	if err := json.Unmarshal(body, &list); err != nil || resp.StatusCode != 200 {
		t.Fatalf("list: %d %s", resp.StatusCode, body)
	}
	if len(list) != 124 {
		t.Errorf("listed %d devices, want 124", len(list))
	}
	resp, _ = do(t, s, "DELETE", "/devices/new-1", "", "If-Match", "*")
	if resp.StatusCode != 204 {
		t.Errorf("delete: %d", resp.StatusCode)
	}
	resp, body = do(t, s, "GET", "/devices/new-1", "")
	wantError(t, resp, body, 404, "DeviceNotFound")
}

func TestDirectMethods(t *testing.T) {
	s := start(t, emulator.Options{})
	resp, body := do(t, s, "POST", "/twins/eu-0003/methods", `{"methodName":"reboot","payload":{"delay":5},"responseTimeoutInSeconds":30}`)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var r hubapi.MethodResult
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	if r.Status != 200 || string(r.Payload) != `{"delay":5}` {
		t.Errorf("result %s, want status 200 echoing the payload", body)
	}
	resp, body = do(t, s, "POST", "/twins/offline-1/methods", `{"methodName":"reboot"}`)
	wantError(t, resp, body, 404, "DeviceNotOnline")
	start := time.Now()
	resp, body = do(t, s, "POST", "/twins/slow-1/methods", `{"methodName":"reboot","responseTimeoutInSeconds":5}`)
	wantError(t, resp, body, 504, "GatewayTimeout")
	if el := time.Since(start); el < 5*time.Second {
		t.Errorf("timeout answered after %v, want the 5s response timeout", el)
	}
	if ds, _ := s.DeviceStats("offline-1"); ds.MethodInvocations != 1 || ds.MethodsDelivered != 0 {
		t.Errorf("offline stats %+v", ds)
	}
}

// TestDeterministicShares checks that shares select exactly round(share × count) devices of a group and
// the same ones on every start.
func TestDeterministicShares(t *testing.T) {
	pick := func(seed int64) []string {
		s := start(t, emulator.Options{Seed: seed})
		var off []string
		for i := range 20 {
			id := emulator.GroupDeviceID(&emulator.Group{IDPrefix: "canary-", Count: 20}, i)
			ds, ok := s.DeviceStats(id)
			if !ok {
				t.Fatalf("no device %s", id)
			}
			if ds.Offline {
				off = append(off, id)
			}
		}
		return off
	}
	a, b := pick(1), pick(1)
	if len(a) != 2 || strings.Join(a, ",") != strings.Join(b, ",") {
		t.Errorf("offline devices %v then %v: want the same 2 of 20", a, b)
	}
}

func TestFaults(t *testing.T) {
	s := start(t, emulator.Options{Faults: emulator.Faults{Throttle: 0.2, Unavailable: 0.2, Drop: 0.1}, Seed: 3})
	counts := map[int]int{}
	dropped := 0
	cs, _ := hubapi.ParseConnectionString(s.ConnectionString())
	for range 100 {
		req, _ := http.NewRequest("GET", s.URL()+"/twins/Device-1?api-version="+hubapi.APIVersion, nil)
		req.Header.Set("Authorization", cs.SASToken(time.Now().Add(time.Hour)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			dropped++
			continue
		}
		resp.Body.Close()
		counts[resp.StatusCode]++
	}
	if counts[429] < 8 || counts[503] < 8 || dropped < 3 || counts[200] < 30 {
		t.Errorf("statuses %v, %d dropped: want roughly 20%% 429, 20%% 503, 10%% dropped", counts, dropped)
	}
	if st := s.Stats(); st.Faults != int64(100-counts[200]) {
		t.Errorf("stats count %d faults, saw %d", st.Faults, 100-counts[200])
	}
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	s := emulatortest.Start(t, "", emulator.Options{TLS: true, CertDir: dir})
	if !strings.HasPrefix(s.URL(), "https://") || s.CAFile() == "" {
		t.Fatalf("URL %s CA %q", s.URL(), s.CAFile())
	}
	pem, err := os.ReadFile(s.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	cs, _ := hubapi.ParseConnectionString(s.ConnectionString())
	for _, host := range []string{"127.0.0.1", "localhost"} {
		u := strings.Replace(s.URL(), "127.0.0.1", host, 1)
		req, _ := http.NewRequest("GET", u+"/devices?api-version="+hubapi.APIVersion, nil)
		req.Header.Set("Authorization", cs.SASToken(time.Now().Add(time.Hour)))
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: status %d", host, resp.StatusCode)
		}
	}
	if resp, body := do(t, s, "GET", "/twins/nope", ""); resp.StatusCode != 404 {
		t.Errorf("over TLS: %d %s", resp.StatusCode, body)
	}
	// A restart with the same directory reuses the CA a user already trusts.
	s2 := emulatortest.Start(t, "", emulator.Options{TLS: true, CertDir: dir})
	pem2, _ := os.ReadFile(s2.CAFile())
	if string(pem) != string(pem2) {
		t.Errorf("CA changed across restarts")
	}
}

func TestStatsEndpoint(t *testing.T) {
	s := start(t, emulator.Options{})
	do(t, s, "POST", "/twins/eu-0001/methods", `{"methodName":"m"}`)
	for _, c := range []struct {
		path, want string
		status     int
	}{
		{"/_emulator/stats", `"methodInvocations": 1`, 200},
		{"/_emulator/stats", `"totals": {`, 200},
		{"/_emulator/devices/eu-0001", `"methodInvocations": 1`, 200},
		{"/_emulator/devices/nope", "no device", 404},
		{"/_emulator/jobs", `"timeline"`, 200},
		{"/_emulator/nothing", "endpoints", 404},
	} {
		resp, err := http.Get(s.URL() + c.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status || !strings.Contains(string(b), c.want) {
			t.Errorf("%s: %d %s", c.path, resp.StatusCode, b)
		}
	}
}

func TestRequestLog(t *testing.T) {
	var buf syncBuffer
	s := start(t, emulator.Options{Log: &buf})
	do(t, s, "GET", "/twins/Device-1", "")
	do(t, s, "GET", "/twins/nope", "")
	got := buf.String()
	if !strings.Contains(got, "GET /twins/Device-1 200") || !strings.Contains(got, "GET /twins/nope 404 DeviceNotFound") {
		t.Errorf("log:\n%s", got)
	}
	if strings.Contains(got, "SharedAccessSignature") {
		t.Errorf("the log holds a token")
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestTokenAudience checks that a token's sr must name this hub, with or without the port.
func TestTokenAudience(t *testing.T) {
	s := start(t, emulator.Options{})
	key := emulator.DevelopmentPolicyKey
	port := s.URL()[strings.LastIndex(s.URL(), ":")+1:]
	for _, c := range []struct {
		host string
		want int
	}{
		{"127.0.0.1:" + port, 200},
		{"127.0.0.1", 200},
		{"localhost", 200},
		{"LOCALHOST:" + port, 200},
		{"127.0.0.1:1", 401},
		{"otherhub.azure-devices.net", 401},
	} {
		cs, err := hubapi.ParseConnectionString("HostName=" + c.host + ";SharedAccessKeyName=iothubowner;SharedAccessKey=" + key)
		if err != nil {
			t.Fatal(err)
		}
		resp, body := do(t, s, "GET", "/twins/Device-1", "", "Authorization", cs.SASToken(time.Now().Add(time.Hour)))
		if resp.StatusCode != c.want {
			t.Errorf("sr %s: %d, want %d: %s", c.host, resp.StatusCode, c.want, body)
		}
	}
	other, _ := hubapi.ParseConnectionString("HostName=127.0.0.1;SharedAccessKeyName=service;SharedAccessKey=" + key)
	resp, body := do(t, s, "GET", "/twins/Device-1", "", "Authorization", other.SASToken(time.Now().Add(time.Hour)))
	wantError(t, resp, body, 401, "IotHubUnauthorizedAccess")
	if strings.Contains(string(body), "sig=") {
		t.Errorf("the error echoes the token: %s", body)
	}
}

func TestStatsEndpointLargeFleet(t *testing.T) {
	f, err := emulator.ParseFleet("big.yaml", []byte("groups:\n  - {name: g, count: 10001, behavior: {converge: {failure: 100%}}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := emulator.Start(t.Context(), emulator.Options{Fleet: f})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	createJob(t, s, `{"jobId":"all","type":"scheduleUpdateTwin","queryCondition":"*","updateTwin":{"etag":"*","tags":{"a":"b"}}}`)
	waitJob(t, s, "all", 10*time.Second)
	if st := s.Stats(); len(st.Device) != 10001 || st.Totals.TwinPatches != 10001 {
		t.Fatalf("Stats: %d devices, totals %+v", len(st.Device), st.Totals)
	}
	for _, c := range []struct{ query, want string }{{"", `"deviceStatsOmitted": 10001`}, {"?devices=all", `"g-10000": {`}} {
		resp, err := http.Get(s.URL() + "/_emulator/stats" + c.query)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), c.want) || !strings.Contains(string(b), `"twinPatches": 10001`) {
			t.Errorf("stats%s lacks %s", c.query, c.want)
		}
	}
}
