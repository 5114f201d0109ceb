package emulator_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/gorilla/websocket"

	"github.com/iot-rollout/rollout/emulator"
	"github.com/iot-rollout/rollout/emulator/emulatortest"
	"github.com/iot-rollout/rollout/hubapi"
)

// startMQTT starts the small fleet with its device endpoint on a free port.
func startMQTT(tb testing.TB) *emulator.Server {
	tb.Helper()
	return start(tb, emulator.Options{MQTTAddr: "127.0.0.1:0"})
}

// deviceKey is the device's primary key, read from the registry as a back end does.
func deviceKey(tb testing.TB, s *emulator.Server, id string) string {
	tb.Helper()
	resp, body := do(tb, s, "GET", "/devices/"+id, "")
	if resp.StatusCode != 200 {
		tb.Fatalf("GET /devices/%s: %d %s", id, resp.StatusCode, body)
	}
	var d hubapi.Device
	if err := json.Unmarshal(body, &d); err != nil {
		tb.Fatal(err)
	}
	return d.Authentication.SymmetricKey.PrimaryKey
}

// deviceToken signs a device SAS token for resource (host/devices/id) with a base64 key, as the SDKs do.
func deviceToken(resource, key string, expiry time.Time) string {
	k, _ := base64.StdEncoding.DecodeString(key)
	sr := url.QueryEscape(resource)
	se := strconv.FormatInt(expiry.Unix(), 10)
	mac := hmac.New(sha256.New, k)
	mac.Write([]byte(sr + "\n" + se))
	return "SharedAccessSignature sr=" + sr + "&sig=" + url.QueryEscape(base64.StdEncoding.EncodeToString(mac.Sum(nil))) + "&se=" + se
}

// device is a test device client and what it was sent.
type device struct {
	c    paho.Client
	lost chan error // the connection ended
	mu   sync.Mutex
	msgs []paho.Message
}

func (d *device) received(prefix string) []paho.Message {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []paho.Message
	for _, m := range d.msgs {
		if strings.HasPrefix(m.Topic(), prefix) {
			out = append(out, m)
		}
	}
	return out
}

// waitFor waits for the n-th message whose topic starts with prefix.
func (d *device) waitFor(tb testing.TB, prefix string, n int) paho.Message {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if ms := d.received(prefix); len(ms) >= n {
			return ms[n-1]
		}
		time.Sleep(5 * time.Millisecond)
	}
	tb.Fatalf("no message %d on %s; got %v", n, prefix, d.received(""))
	return nil
}

func (d *device) subscribe(tb testing.TB, filters ...string) {
	tb.Helper()
	for _, f := range filters {
		if t := d.c.Subscribe(f, 0, nil); !t.WaitTimeout(5*time.Second) || t.Error() != nil {
			tb.Fatalf("subscribe %s: %v", f, t.Error())
		}
	}
}

func (d *device) publish(tb testing.TB, topic string, qos byte, payload string) {
	tb.Helper()
	t := d.c.Publish(topic, qos, false, payload)
	if !t.WaitTimeout(5*time.Second) || t.Error() != nil {
		tb.Fatalf("publish %s: %v", topic, t.Error())
	}
}

// wantClosed checks that the emulator closed the connection.
func (d *device) wantClosed(tb testing.TB) {
	tb.Helper()
	select {
	case <-d.lost:
	case <-time.After(5 * time.Second):
		tb.Fatal("the connection is still open")
	}
}

// clientOptions are a device client's options for the connection the SDKs make: clean=0, protocol 4.
func clientOptions(tb testing.TB, s *emulator.Server, clientID, username, password string) *paho.ClientOptions {
	tb.Helper()
	pem, err := os.ReadFile(s.CAFile())
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	o := paho.NewClientOptions().AddBroker("ssl://" + s.MQTTAddr()).SetClientID(clientID).
		SetUsername(username).SetPassword(password).SetProtocolVersion(4).SetCleanSession(false).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second).
		SetTLSConfig(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}).SetKeepAlive(30 * time.Second)
	return o
}

func mqttHost(s *emulator.Server) string { return s.MQTTAddr() }

// connect connects as device id with its registry key; it fails the test unless CONNACK is 0.
func connect(tb testing.TB, s *emulator.Server, id string) *device {
	tb.Helper()
	d, err := dial(tb, s, id, mqttHost(s)+"/"+id+"/?api-version=2021-04-12",
		deviceToken(mqttHost(s)+"/devices/"+id, deviceKey(tb, s, id), time.Now().Add(time.Hour)))
	if err != nil {
		tb.Fatalf("connect %s: %v", id, err)
	}
	return d
}

func dial(tb testing.TB, s *emulator.Server, clientID, username, password string) (*device, error) {
	tb.Helper()
	d := &device{lost: make(chan error, 1)}
	o := clientOptions(tb, s, clientID, username, password).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
			d.mu.Lock()
			d.msgs = append(d.msgs, m)
			d.mu.Unlock()
		}).
		SetConnectionLostHandler(func(_ paho.Client, err error) { d.lost <- err })
	d.c = paho.NewClient(o)
	t := d.c.Connect()
	if !t.WaitTimeout(10 * time.Second) {
		return nil, errors.New("connect timed out")
	}
	if t.Error() != nil {
		return nil, t.Error()
	}
	tb.Cleanup(func() { d.c.Disconnect(0) })
	return d, nil
}

func TestMQTTAuthentication(t *testing.T) {
	s := startMQTT(t)
	host := mqttHost(s)
	key := deviceKey(t, s, "Device-1")
	other := deviceKey(t, s, "slow-1")
	user := host + "/Device-1/?api-version=2021-04-12"
	good := deviceToken(host+"/devices/Device-1", key, time.Now().Add(time.Hour))
	cs, _ := hubapi.ParseConnectionString(s.ConnectionString())
	tests := []struct {
		name, clientID, user, pass string
		ok                         bool
	}{
		{"device key", "Device-1", user, good, true},
		{"old username without ?", "Device-1", host + "/Device-1/api-version=2016-11-14", good, true},
		{"policy token for the hub", "Device-1", user, cs.SASToken(time.Now().Add(time.Hour)), true},
		{"another device's key", "Device-1", user, deviceToken(host+"/devices/Device-1", other, time.Now().Add(time.Hour)), false},
		{"token for another device", "Device-1", user, deviceToken(host+"/devices/slow-1", key, time.Now().Add(time.Hour)), false},
		{"token for a prefix of the id", "Device-1", user, deviceToken(host+"/devices/Device-", key, time.Now().Add(time.Hour)), false},
		{"expired", "Device-1", user, deviceToken(host+"/devices/Device-1", key, time.Now().Add(-time.Hour)), false},
		{"other host", "Device-1", user, deviceToken("elsewhere.azure-devices.net/devices/Device-1", key, time.Now().Add(time.Hour)), false},
		{"garbage", "Device-1", user, "SharedAccessSignature nonsense", false},
		{"empty password", "Device-1", user, "", false},
		{"unknown device", "nobody", host + "/nobody/?api-version=2021-04-12", good, false},
		{"client id is not the device", "slow-1", user, good, false},
		{"unknown module", "Device-1/m1", host + "/Device-1/m1/?api-version=2021-04-12", good, false},
		{"malformed username", "Device-1", "Device-1", good, false},
	}
	for _, tt := range tests {
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

func TestMQTTTopicRules(t *testing.T) {
	s := startMQTT(t)
	tests := []struct {
		name string
		act  func(tb testing.TB, d *device)
	}{
		{"publish to an unknown topic", func(tb testing.TB, d *device) { d.c.Publish("devices/Device-1/elsewhere", 1, false, "x") }},
		{"telemetry as another device", func(tb testing.TB, d *device) { d.c.Publish("devices/slow-1/messages/events/", 1, false, "x") }},
		{"QoS 2 telemetry", func(tb testing.TB, d *device) { d.c.Publish("devices/Device-1/messages/events/", 2, false, "x") }},
		{"subscribe to a wildcard", func(tb testing.TB, d *device) { d.c.Subscribe("#", 0, nil) }},
		{"subscribe to another device", func(tb testing.TB, d *device) { d.c.Subscribe("devices/slow-1/messages/devicebound/#", 1, nil) }},
		{"telemetry over 256 KB", func(tb testing.TB, d *device) {
			d.c.Publish("devices/Device-1/messages/events/", 1, false, strings.Repeat("x", 300*1024))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := connect(t, s, "Device-1")
			tt.act(t, d)
			d.wantClosed(t)
		})
	}
	// The hub's own topics and at most five subscriptions are fine, QoS 2 subscriptions are granted QoS 1.
	d := connect(t, s, "Device-1")
	d.subscribe(t, "$iothub/twin/res/#", "$iothub/methods/POST/#", "$iothub/twin/PATCH/properties/desired/#")
	tok := d.c.Subscribe("devices/Device-1/messages/devicebound/#", 2, nil).(*paho.SubscribeToken)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	if got := tok.Result()["devices/Device-1/messages/devicebound/#"]; got != 1 {
		t.Errorf("QoS 2 subscription granted %d, want 1", got)
	}
	d.publish(t, "devices/Device-1/messages/events/a=1", 1, `{"t":21}`)
	d.publish(t, "devices/Device-1/messages/events/", 0, `{"t":22}`)
	waitUntil(t, func() bool { return s.Stats().Totals.Telemetry == 2 })
	if !d.c.IsConnected() {
		t.Fatal("the connection closed on allowed traffic")
	}
}

func waitUntil(tb testing.TB, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatal("condition not met in 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestMQTTMalformedConnect(t *testing.T) {
	s := startMQTT(t)
	pem, _ := os.ReadFile(s.CAFile())
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	for name, raw := range map[string][]byte{
		"not a connect":         {0x30, 0x02, 0x00, 0x00},
		"bad protocol name":     {0x10, 0x0c, 0x00, 0x04, 'X', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x3c, 0x00, 0x00},
		"huge remaining length": {0x10, 0xff, 0xff, 0xff, 0x7f},
	} {
		t.Run(name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", s.MQTTAddr(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_, _ = conn.Write(raw)
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 16)
			n, err := conn.Read(buf)
			// A CONNACK refusing the connection, or the connection closed: never accepted, never stuck.
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatal("the emulator neither answered nor closed the connection")
				}
				return
			}
			if n >= 4 && buf[0] == 0x20 && buf[3] == 0 {
				t.Fatalf("accepted: % x", buf[:n])
			}
		})
	}
	// The emulator still serves devices.
	connect(t, s, "Device-1")
}

func TestMQTTTwin(t *testing.T) {
	s := startMQTT(t)
	d := connect(t, s, "Device-1")
	d.subscribe(t, "$iothub/twin/res/#", "$iothub/twin/PATCH/properties/desired/#")

	d.publish(t, "$iothub/twin/GET/?$rid=get-1", 0, " ")
	m := d.waitFor(t, "$iothub/twin/res/", 1)
	if m.Topic() != "$iothub/twin/res/200/?$rid=get-1" {
		t.Errorf("GET answered on %s", m.Topic())
	}
	var doc struct {
		Desired  map[string]any `json:"desired"`
		Reported map[string]any `json:"reported"`
	}
	if err := json.Unmarshal(m.Payload(), &doc); err != nil {
		t.Fatalf("GET body %s: %v", m.Payload(), err)
	}
	if doc.Desired["mode"] != "eco" || doc.Desired["$version"] == nil || doc.Reported["$version"] == nil || doc.Desired["$metadata"] != nil {
		t.Errorf("GET body %s", m.Payload())
	}

	d.publish(t, "$iothub/twin/PATCH/properties/reported/?$rid=p1", 0, `{"battery":90,"firmware":null}`)
	m = d.waitFor(t, "$iothub/twin/res/", 2)
	if m.Topic() != "$iothub/twin/res/204/?$rid=p1&$version=2" || len(m.Payload()) != 0 {
		t.Errorf("reported patch answered on %s with %q", m.Topic(), m.Payload())
	}
	_, body := do(t, s, "GET", "/twins/Device-1", "")
	tw := decodeTwin(t, body)
	if path(tw, "properties", "reported", "battery") != 90.0 || path(tw, "properties", "reported", "firmware") != nil {
		t.Errorf("reported after patch: %v", path(tw, "properties", "reported"))
	}
	if tw["connectionState"] != "Connected" {
		t.Errorf("connectionState %v, want Connected", tw["connectionState"])
	}

	// Bad reported patches get 400 with the hub's JSON error, and the connection stays.
	for i, bad := range []string{`{"battery":`, `[1,2]`, `{"a.b":1}`, `{"big":` + strconv.Quote(strings.Repeat("x", 5000)) + `}`} {
		d.publish(t, "$iothub/twin/PATCH/properties/reported/?$rid=bad"+strconv.Itoa(i), 0, bad)
		m = d.waitFor(t, "$iothub/twin/res/", 3+i)
		var e struct {
			ErrorCode int    `json:"errorCode"`
			Message   string `json:"message"`
		}
		if !strings.HasPrefix(m.Topic(), "$iothub/twin/res/400/?$rid=bad"+strconv.Itoa(i)) || json.Unmarshal(m.Payload(), &e) != nil || e.ErrorCode != 400004 {
			t.Errorf("bad patch %q answered on %s with %s", bad, m.Topic(), m.Payload())
		}
	}

	// Desired changes reach the device however they are made.
	resp, body := do(t, s, "PATCH", "/twins/Device-1", `{"properties":{"desired":{"fw":"2.0"}}}`)
	if resp.StatusCode != 200 {
		t.Fatalf("PATCH: %d %s", resp.StatusCode, body)
	}
	m = d.waitFor(t, "$iothub/twin/PATCH/properties/desired/", 1)
	var patch map[string]any
	_ = json.Unmarshal(m.Payload(), &patch)
	ver := path(decodeTwin(t, body), "properties", "desired", "$version")
	if patch["fw"] != "2.0" || patch["$version"] != ver || m.Topic() != "$iothub/twin/PATCH/properties/desired/?$version="+strconv.Itoa(int(ver.(float64))) {
		t.Errorf("desired push %s %s, want fw 2.0 at $version %v", m.Topic(), m.Payload(), ver)
	}
	do(t, s, "PUT", "/twins/Device-1", `{"properties":{"desired":{"fw":"3.0"}}}`)
	m = d.waitFor(t, "$iothub/twin/PATCH/properties/desired/", 2)
	patch = nil
	_ = json.Unmarshal(m.Payload(), &patch)
	if v, ok := patch["mode"]; patch["fw"] != "3.0" || !ok || v != nil {
		t.Errorf("replace pushed %s, want fw 3.0 and mode null", m.Payload())
	}
	createJob(t, s, `{"jobId":"tw-1","type":"scheduleUpdateTwin","queryCondition":"deviceId = 'Device-1'",
		"updateTwin":{"etag":"*","properties":{"desired":{"fw":"4.0"}}},"maxExecutionTimeInSeconds":60}`)
	m = d.waitFor(t, "$iothub/twin/PATCH/properties/desired/", 3)
	patch = nil
	_ = json.Unmarshal(m.Payload(), &patch)
	if patch["fw"] != "4.0" {
		t.Errorf("twin job pushed %s", m.Payload())
	}
	// The real device reports; the simulator no longer does.
	time.Sleep(300 * time.Millisecond)
	_, body = do(t, s, "GET", "/twins/Device-1", "")
	if got := path(decodeTwin(t, body), "properties", "reported", "fw"); got != nil {
		t.Errorf("the simulator reported fw=%v for a device driven by a client", got)
	}

	d.c.Disconnect(0)
	waitUntil(t, func() bool {
		_, body := do(t, s, "GET", "/twins/Device-1", "")
		return decodeTwin(t, body)["connectionState"] == "Disconnected"
	})
	items, _, _ := queryAll(t, s, "SELECT * FROM devices WHERE connectionState = 'Disconnected' AND deviceId = 'Device-1'", 10)
	if len(items) != 1 {
		t.Errorf("query sees %d disconnected Device-1, want 1", len(items))
	}
}

// answerMethods makes d answer every method with status and body (raw), after delay.
func answerMethods(tb testing.TB, d *device, status int, body string) {
	tb.Helper()
	t := d.c.Subscribe("$iothub/methods/POST/#", 0, func(c paho.Client, m paho.Message) {
		rid := m.Topic()[strings.Index(m.Topic(), "?$rid=")+len("?$rid="):]
		c.Publish("$iothub/methods/res/"+strconv.Itoa(status)+"/?$rid="+rid, 0, false, body)
	})
	if !t.WaitTimeout(5*time.Second) || t.Error() != nil {
		tb.Fatal(t.Error())
	}
}

func TestMQTTMethods(t *testing.T) {
	t.Parallel()
	s := startMQTT(t)
	d := connect(t, s, "Device-1")
	answerMethods(t, d, 201, `{"rebooted":true}`)

	resp, body := do(t, s, "POST", "/twins/Device-1/methods", `{"methodName":"reboot","payload":{"in":1},"responseTimeoutInSeconds":5}`)
	var res hubapi.MethodResult
	if resp.StatusCode != 200 || json.Unmarshal(body, &res) != nil || res.Status != 201 || string(res.Payload) != `{"rebooted":true}` {
		t.Fatalf("REST call: %d %s, want 200 with the device's 201 and payload", resp.StatusCode, body)
	}

	createJob(t, s, `{"jobId":"m-1","type":"scheduleDeviceMethod","queryCondition":"deviceId IN ['Device-1', 'eu-0000']",
		"cloudToDeviceMethod":{"methodName":"install","payload":{"v":1},"responseTimeoutInSeconds":5},"maxExecutionTimeInSeconds":60}`)
	jr := waitJob(t, s, "m-1", 10*time.Second)
	if jr.DeviceJobStatistics.SucceededCount != 2 {
		t.Errorf("job stats %+v, want 2 succeeded", jr.DeviceJobStatistics)
	}
	items, _, _ := queryAll(t, s, "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'm-1'", 10)
	got := map[string]int32{}
	for _, it := range items {
		var row hubapi.DeviceJob
		_ = json.Unmarshal(it, &row)
		if row.Outcome != nil && row.Outcome.DeviceMethodResponse != nil {
			got[row.DeviceID] = row.Outcome.DeviceMethodResponse.Status
			if row.DeviceID == "Device-1" && string(row.Outcome.DeviceMethodResponse.Payload) != `{"rebooted":true}` {
				t.Errorf("Device-1 outcome payload %s", row.Outcome.DeviceMethodResponse.Payload)
			}
		}
	}
	if got["Device-1"] != 201 || got["eu-0000"] != 200 {
		t.Errorf("job outcomes %v, want the real device's 201 beside the simulated 200", got)
	}
}

func TestMQTTMethodTimeouts(t *testing.T) {
	t.Parallel()
	s := startMQTT(t)
	tests := []struct {
		name   string
		device func(t *testing.T) // sets up the device side
		id     string
		call   string
		status int
		code   string
		within time.Duration
	}{
		{name: "never answers", id: "eu-0001", device: func(t *testing.T) {
			connect(t, s, "eu-0001").subscribe(t, "$iothub/methods/POST/#")
		}, call: `{"methodName":"m","responseTimeoutInSeconds":5}`, status: 504, code: "GatewayTimeout", within: 7 * time.Second},
		{name: "answers with a body that is not JSON", id: "eu-0002", device: func(t *testing.T) {
			answerMethods(t, connect(t, s, "eu-0002"), 200, "not json")
		}, call: `{"methodName":"m","responseTimeoutInSeconds":5}`, status: 504, code: "GatewayTimeout", within: 7 * time.Second},
		{name: "connected but not subscribed to methods", id: "eu-0003", device: func(t *testing.T) {
			connect(t, s, "eu-0003")
		}, call: `{"methodName":"m","responseTimeoutInSeconds":5}`, status: 404, code: "DeviceNotOnline", within: time.Second},
		{name: "gone after it was taken over", id: "eu-0004", device: func(t *testing.T) {
			connect(t, s, "eu-0004").c.Disconnect(0)
			waitUntil(t, func() bool { ds, _ := s.DeviceStats("eu-0004"); return ds.ConnectionState == "Disconnected" })
		}, call: `{"methodName":"m","responseTimeoutInSeconds":5,"connectTimeoutInSeconds":1}`, status: 404, code: "DeviceNotOnline", within: 3 * time.Second},
		{name: "disconnects mid-call", id: "eu-0005", device: func(t *testing.T) {
			d := connect(t, s, "eu-0005")
			d.c.Subscribe("$iothub/methods/POST/#", 0, func(c paho.Client, m paho.Message) { go c.Disconnect(0) }).Wait()
		}, call: `{"methodName":"m","responseTimeoutInSeconds":30}`, status: 404, code: "DeviceNotOnline", within: 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.device(t)
			began := time.Now()
			resp, body := do(t, s, "POST", "/twins/"+tt.id+"/methods", tt.call)
			wantError(t, resp, body, tt.status, tt.code)
			if el := time.Since(began); el > tt.within {
				t.Errorf("answered after %v, want within %v", el, tt.within)
			}
		})
	}
}

func TestMQTTWaitsForConnect(t *testing.T) {
	t.Parallel()
	s := startMQTT(t)
	// A device taken over by a client and then left is Disconnected; when it reconnects within
	// connectTimeoutInSeconds it gets the call.
	connect(t, s, "eu-0010").c.Disconnect(0)
	waitUntil(t, func() bool { ds, _ := s.DeviceStats("eu-0010"); return ds.ConnectionState == "Disconnected" })
	done := make(chan struct{})
	var resp []byte
	var status int
	go func() {
		defer close(done)
		r, b := do(t, s, "POST", "/twins/eu-0010/methods", `{"methodName":"m","responseTimeoutInSeconds":5,"connectTimeoutInSeconds":5}`)
		status, resp = r.StatusCode, b
	}()
	time.Sleep(300 * time.Millisecond)
	answerMethods(t, connect(t, s, "eu-0010"), 200, `"late"`)
	<-done
	if status != 200 || !strings.Contains(string(resp), `"late"`) {
		t.Errorf("call answered %d %s, want the device's late answer", status, resp)
	}
}

func TestMQTTConnections(t *testing.T) {
	s := startMQTT(t)
	d := connect(t, s, "Device-1")
	d.subscribe(t, "$iothub/methods/POST/#")
	d.publish(t, "devices/Device-1/messages/events/", 1, "{}")
	resp, body := do(t, s, "GET", "/_emulator/connections", "")
	var out struct {
		Connections []emulator.Connection `json:"connections"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &out) != nil || len(out.Connections) != 1 {
		t.Fatalf("connections: %d %s", resp.StatusCode, body)
	}
	c := out.Connections[0]
	if c.DeviceID != "Device-1" || c.Transport != "mqtt" || c.APIVersion != "2021-04-12" || len(c.Subscriptions) != 1 || c.Telemetry != 1 || c.Since.IsZero() {
		t.Errorf("connection %+v", c)
	}
	d.c.Publish("nowhere", 1, false, "x")
	d.wantClosed(t)
	waitUntil(t, func() bool { live, _ := s.Connections(); return len(live) == 0 })
	_, ended := s.Connections()
	if r := ended["Device-1"].DisconnectReason; !strings.Contains(r, "does not serve") {
		t.Errorf("disconnect reason %q", r)
	}
	// A reconnect with clean=0 keeps the subscriptions, so methods still arrive.
	d2 := connect(t, s, "Device-1")
	live, _ := s.Connections()
	if len(live) != 1 || len(live[0].Subscriptions) != 1 {
		t.Errorf("after reconnect: %+v", live)
	}
	_ = d2
}

func TestMQTTExternalDriver(t *testing.T) {
	t.Parallel()
	s := emulatortest.Start(t, "testdata/external.yaml", emulator.Options{MQTTAddr: "127.0.0.1:0"})
	// Waiting for a client from the start: Disconnected, no simulated answers, no simulated reports.
	items, _, _ := queryAll(t, s, "SELECT * FROM devices WHERE connectionState = 'Disconnected'", 10)
	if len(items) != 3 {
		t.Errorf("%d devices Disconnected at start, want the 3 external ones", len(items))
	}
	resp, body := do(t, s, "POST", "/twins/real-0000/methods", `{"methodName":"m","responseTimeoutInSeconds":5}`)
	wantError(t, resp, body, 404, "DeviceNotOnline")
	do(t, s, "PATCH", "/twins/real-0000", `{"properties":{"desired":{"fw":"2"}}}`)
	time.Sleep(200 * time.Millisecond)
	_, body = do(t, s, "GET", "/twins/real-0000", "")
	if got := path(decodeTwin(t, body), "properties", "reported", "fw"); got != nil {
		t.Errorf("an external device was simulated: reported fw=%v", got)
	}

	// A job over a device that answers, one that never does and one never connected ends, each row
	// with its outcome; the simulated devices answer beside them.
	answerMethods(t, connect(t, s, "real-0000"), 200, `{"ok":1}`)
	connect(t, s, "real-0001").subscribe(t, "$iothub/methods/POST/#")
	createJob(t, s, `{"jobId":"mix","type":"scheduleDeviceMethod","queryCondition":"deviceId IN ['real-0000','real-0001','real-0002','sim-0000']",
		"cloudToDeviceMethod":{"methodName":"install","responseTimeoutInSeconds":5},"maxExecutionTimeInSeconds":60}`)
	jr := waitJob(t, s, "mix", 10*time.Second)
	if jr.Status != "completed" {
		t.Fatalf("job %s", jr.Status)
	}
	items, _, _ = queryAll(t, s, "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'mix'", 10)
	got := map[string]string{}
	for _, it := range items {
		var row hubapi.DeviceJob
		_ = json.Unmarshal(it, &row)
		switch {
		case row.Error != nil:
			got[row.DeviceID] = row.Status + " " + row.Error.Code
		case row.Outcome != nil && row.Outcome.DeviceMethodResponse != nil:
			got[row.DeviceID] = row.Status + " " + strconv.Itoa(int(row.Outcome.DeviceMethodResponse.Status))
		}
	}
	want := map[string]string{"real-0000": "completed 200", "real-0001": "failed GatewayTimeout",
		"real-0002": "failed DeviceNotOnline", "sim-0000": "completed 200"}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("%s: %q, want %q", id, got[id], w)
		}
	}
}

func TestMQTTProtocolLevel(t *testing.T) {
	s := startMQTT(t)
	o := clientOptions(t, s, "Device-1", mqttHost(s)+"/Device-1/?api-version=2021-04-12",
		deviceToken(mqttHost(s)+"/devices/Device-1", deviceKey(t, s, "Device-1"), time.Now().Add(time.Hour))).SetProtocolVersion(3)
	c := paho.NewClient(o)
	tok := c.Connect()
	tok.WaitTimeout(5 * time.Second)
	if !errors.Is(tok.Error(), packets.ErrorRefusedBadProtocolVersion) {
		t.Errorf("MQTT 3.1: %v, want CONNACK 1 (unacceptable protocol version)", tok.Error())
	}
}

func TestMQTTTokenExpiry(t *testing.T) {
	t.Parallel()
	s := startMQTT(t)
	// A token already past its expiry but inside the accepted clock skew connects, and the connection
	// is severed when the skew runs out.
	d, err := dial(t, s, "Device-1", mqttHost(s)+"/Device-1/?api-version=2021-04-12",
		deviceToken(mqttHost(s)+"/devices/Device-1", deviceKey(t, s, "Device-1"), time.Now().Add(-5*time.Minute+time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	d.wantClosed(t)
	waitUntil(t, func() bool { live, _ := s.Connections(); return len(live) == 0 })
	_, ended := s.Connections()
	if r := ended["Device-1"].DisconnectReason; !strings.Contains(r, "expired") {
		t.Errorf("disconnect reason %q, want the token's expiry", r)
	}
}

func TestMQTTOverWebSocket(t *testing.T) {
	t.Parallel()
	s := start(t, emulator.Options{TLS: true, MQTTAddr: "127.0.0.1:0"})
	// Only a WebSocket upgrade asking for mqtt is served on the path.
	resp, _ := do(t, s, "GET", "/$iothub/websocket", "")
	if resp.StatusCode != 400 {
		t.Errorf("plain GET /$iothub/websocket: %d, want 400", resp.StatusCode)
	}
	host := strings.TrimPrefix(s.URL(), "https://")
	key := deviceKey(t, s, "Device-1")
	d := &device{lost: make(chan error, 1)}
	o := clientOptions(t, s, "Device-1", host+"/Device-1/?api-version=2021-04-12",
		deviceToken(host+"/devices/Device-1", key, time.Now().Add(time.Hour)))
	o.Servers = nil
	o.AddBroker("wss://" + host + "/$iothub/websocket")
	o.SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
		d.mu.Lock()
		d.msgs = append(d.msgs, m)
		d.mu.Unlock()
	})
	d.c = paho.NewClient(o)
	if tok := d.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect over wss: %v", tok.Error())
	}
	defer d.c.Disconnect(0)
	d.subscribe(t, "$iothub/twin/res/#")
	d.publish(t, "$iothub/twin/GET/?$rid=ws", 0, " ")
	if m := d.waitFor(t, "$iothub/twin/res/200/?$rid=ws", 1); !strings.Contains(string(m.Payload()), `"mode":"eco"`) {
		t.Errorf("twin over wss: %s", m.Payload())
	}
	answerMethods(t, d, 200, `{"via":"ws"}`)
	resp, body := do(t, s, "POST", "/twins/Device-1/methods", `{"methodName":"m","responseTimeoutInSeconds":5}`)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"via":"ws"`) {
		t.Errorf("method over wss: %d %s", resp.StatusCode, body)
	}
	live, _ := s.Connections()
	if len(live) != 1 || live[0].Transport != "mqtt-ws" {
		t.Errorf("connections %+v, want one mqtt-ws", live)
	}
}

func TestWebSocketSubprotocol(t *testing.T) {
	s := start(t, emulator.Options{TLS: true, MQTTAddr: "127.0.0.1:0"})
	pem, _ := os.ReadFile(s.CAFile())
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	url := "wss://" + strings.TrimPrefix(s.URL(), "https://") + "/$iothub/websocket"
	for _, tt := range []struct {
		protos []string
		status int
		echo   string
	}{
		{[]string{"MQTT"}, 101, "MQTT"}, // the C SDK's spelling
		{[]string{"mqtt"}, 101, "mqtt"}, // the Node SDK's
		{nil, 400, ""},
		{[]string{"chat"}, 400, ""},
	} {
		dialer := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: pool}, Subprotocols: tt.protos}
		c, resp, err := dialer.Dial(url, nil)
		if c != nil {
			c.Close()
		}
		if resp == nil {
			t.Fatalf("%v: %v", tt.protos, err)
		}
		if resp.StatusCode != tt.status || resp.Header.Get("Sec-WebSocket-Protocol") != tt.echo {
			t.Errorf("%v: status %d protocol %q, want %d %q", tt.protos, resp.StatusCode, resp.Header.Get("Sec-WebSocket-Protocol"), tt.status, tt.echo)
		}
	}
	// Without the device side the path is not served.
	s2 := start(t, emulator.Options{TLS: true})
	if resp, _ := do(t, s2, "GET", "/$iothub/websocket", ""); resp.StatusCode != 404 {
		t.Errorf("device side off: %d, want 404", resp.StatusCode)
	}
}

func TestMQTTRevoked(t *testing.T) {
	s := startMQTT(t)
	for _, tt := range []struct {
		id, method, body, reason string
	}{
		{"eu-0020", "PUT", `{"deviceId":"eu-0020","status":"disabled"}`, "disabled"},
		{"eu-0021", "DELETE", "", "deleted"},
	} {
		d := connect(t, s, tt.id)
		hdr := []string{}
		if tt.method == "PUT" {
			hdr = []string{"If-Match", "*"}
		}
		if resp, body := do(t, s, tt.method, "/devices/"+tt.id, tt.body, hdr...); resp.StatusCode >= 300 {
			t.Fatalf("%s /devices/%s: %d %s", tt.method, tt.id, resp.StatusCode, body)
		}
		d.wantClosed(t)
		waitUntil(t, func() bool { _, ended := s.Connections(); return ended[tt.id].DisconnectReason != "" })
		if _, ended := s.Connections(); !strings.Contains(ended[tt.id].DisconnectReason, tt.reason) {
			t.Errorf("%s: reason %q, want %s", tt.id, ended[tt.id].DisconnectReason, tt.reason)
		}
		if _, err := dial(t, s, tt.id, mqttHost(s)+"/"+tt.id+"/?api-version=2021-04-12", "SharedAccessSignature sr=x&sig=y&se=1"); !errors.Is(err, packets.ErrorRefusedNotAuthorised) {
			t.Errorf("%s reconnect: %v, want CONNACK 5", tt.id, err)
		}
	}
}

func TestMQTTConnectionTimes(t *testing.T) {
	s := startMQTT(t)
	registry := func() hubapi.Device {
		_, body := do(t, s, "GET", "/devices/Device-1", "")
		var d hubapi.Device
		if err := json.Unmarshal(body, &d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	before := registry()
	time.Sleep(10 * time.Millisecond)
	d := connect(t, s, "Device-1")
	on := registry()
	if on.ConnectionState != "Connected" || !on.ConnectionStateUpdatedTime.After(before.ConnectionStateUpdatedTime.Time) {
		t.Errorf("after connect: %s at %v (before %v)", on.ConnectionState, on.ConnectionStateUpdatedTime, before.ConnectionStateUpdatedTime)
	}
	time.Sleep(10 * time.Millisecond)
	d.publish(t, "devices/Device-1/messages/events/", 1, "{}")
	if act := registry().LastActivityTime; !act.After(on.ConnectionStateUpdatedTime.Time) {
		t.Errorf("lastActivityTime %v did not move on telemetry", act)
	}
	time.Sleep(10 * time.Millisecond)
	d.c.Disconnect(0)
	waitUntil(t, func() bool { return registry().ConnectionState == "Disconnected" })
	if off := registry(); !off.ConnectionStateUpdatedTime.After(on.ConnectionStateUpdatedTime.Time) {
		t.Errorf("after disconnect: connectionStateUpdatedTime %v, not after %v", off.ConnectionStateUpdatedTime, on.ConnectionStateUpdatedTime)
	}
}

func TestMQTTTwinThrottled(t *testing.T) {
	s := start(t, emulator.Options{MQTTAddr: "127.0.0.1:0", Tier: "S1"})
	d := connect(t, s, "Device-1")
	d.subscribe(t, "$iothub/twin/res/#")
	// S1 allows 50 twin updates a second with ten seconds' burst; 700 at once go past it.
	const n = 700
	for i := range n {
		d.c.Publish("$iothub/twin/PATCH/properties/reported/?$rid="+strconv.Itoa(i), 0, false, `{"i":`+strconv.Itoa(i)+`}`)
	}
	d.waitFor(t, "$iothub/twin/res/", n)
	counts := map[string]int{}
	for _, m := range d.received("$iothub/twin/res/") {
		status := strings.Split(m.Topic(), "/")[3]
		counts[status]++
		if status == "429" {
			var e struct{ ErrorCode int }
			if json.Unmarshal(m.Payload(), &e) != nil || e.ErrorCode != 429001 {
				t.Errorf("429 body %s, want errorCode 429001", m.Payload())
			}
		}
	}
	if counts["204"] == 0 || counts["429"] == 0 || counts["204"]+counts["429"] != n {
		t.Errorf("answers by status %v, want 204s then 429s, %d in all", counts, n)
	}
}

func TestMQTTModelID(t *testing.T) {
	s := startMQTT(t)
	_, err := dial(t, s, "Device-1", mqttHost(s)+"/Device-1/?api-version=2021-04-12&model-id=dtmi%3Acom%3Aexample%3AThermostat%3B1&DeviceClientType=test%2F1",
		deviceToken(mqttHost(s)+"/devices/Device-1", deviceKey(t, s, "Device-1"), time.Now().Add(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	_, body := do(t, s, "GET", "/twins/Device-1", "")
	if got := decodeTwin(t, body)["modelId"]; got != "dtmi:com:example:Thermostat;1" {
		t.Errorf("modelId %v, want the one the client announced", got)
	}
	if live, _ := s.Connections(); len(live) != 1 || live[0].ClientType != "test/1" {
		t.Errorf("connections %+v, want DeviceClientType test/1", live)
	}
}

// TestMQTTTokenRenewal reconnects the way the Node SDK renews its SAS token: a new CONNECT with a new
// token, the same client id and clean=0, and no SUBSCRIBE; methods and desired patches reach the new
// connection.
func TestMQTTTokenRenewal(t *testing.T) {
	t.Parallel()
	s := startMQTT(t)
	old := connect(t, s, "Device-1")
	old.subscribe(t, "$iothub/methods/POST/#", "$iothub/twin/PATCH/properties/desired/#")
	renewed := connect(t, s, "Device-1") // a fresh token, signed now
	old.wantClosed(t)
	done := make(chan hubapi.MethodResult, 1)
	go func() {
		var res hubapi.MethodResult
		_, body := do(t, s, "POST", "/twins/Device-1/methods", `{"methodName":"ping","payload":{},"responseTimeoutInSeconds":5}`)
		_ = json.Unmarshal(body, &res)
		done <- res
	}()
	m := renewed.waitFor(t, "$iothub/methods/POST/ping/", 1)
	rid := m.Topic()[strings.Index(m.Topic(), "?$rid=")+len("?$rid="):]
	renewed.publish(t, "$iothub/methods/res/200/?$rid="+rid, 0, `{"pong":true}`)
	if res := <-done; res.Status != 200 || string(res.Payload) != `{"pong":true}` {
		t.Errorf("method after the renewal: %+v", res)
	}
	do(t, s, "PATCH", "/twins/Device-1", `{"properties":{"desired":{"fw":"3"}}}`)
	renewed.waitFor(t, "$iothub/twin/PATCH/properties/desired/", 1)
}
