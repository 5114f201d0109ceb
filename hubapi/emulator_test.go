package hubapi_test

// The client suite against the in-process emulator over loopback HTTP: the same operations as the
// httptest suite, end to end, with every request still held to the swagger on its way out.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/emulator"
	"github.com/iot-rollout/rollout/emulator/emulatortest"
	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/hubapi/hubapitest"
)

// swaggerTransport checks each request against the swagger before sending it.
type swaggerTransport struct {
	tb    testing.TB
	next  http.RoundTripper
	count atomic.Int64
}

func (s *swaggerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(r.Body)
		r.Body.Close()
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	if err := loadSwagger(s.tb).Check(r, body); err != nil {
		s.tb.Errorf("request disagrees with the swagger: %v", err)
	}
	s.count.Add(1)
	return s.next.RoundTrip(r)
}

const emuFleet = `
devices:
  - {deviceId: online-1, tags: {ring: canary, building: "43"}}
  - {deviceId: online-2, tags: {ring: canary}}
  - {deviceId: online-3, tags: {ring: main}}
  - {deviceId: offline-1, connectionState: Disconnected, tags: {ring: main}}
`

// emuClient starts an emulator and returns a client connected to it over plain HTTP with fast
// backoff on the real clock (the emulator's own clock is real).
func emuClient(t *testing.T, opts emulator.Options) (*hubapi.Client, *emulator.Server, *swaggerTransport) {
	return emuClientWith(t, opts, nil)
}

// emuClientWith is emuClient with a clock for the client (nil: the system clock).
func emuClientWith(t *testing.T, opts emulator.Options, clock hubapi.Clock) (*hubapi.Client, *emulator.Server, *swaggerTransport) {
	t.Helper()
	if opts.Fleet == nil {
		f, err := emulator.ParseFleet("fleet.yaml", []byte(emuFleet))
		if err != nil {
			t.Fatal(err)
		}
		opts.Fleet = f
	}
	srv := emulatortest.Start(t, "", opts)
	tr := &swaggerTransport{tb: t, next: http.DefaultTransport}
	c, err := hubapi.NewFromConnectionString(srv.ConnectionString(), hubapi.Options{
		PlainHTTP: true, HTTPClient: &http.Client{Transport: tr},
		MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond, Clock: clock,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c, srv, tr
}

func TestEmulatorDevicesAndTwins(t *testing.T) {
	c, _, _ := emuClient(t, emulator.Options{})
	ctx := context.Background()

	d, err := c.CreateDevice(ctx, &hubapi.Device{DeviceID: "new#1", Authentication: &hubapi.AuthenticationMechanism{Type: "sas", SymmetricKey: &hubapi.SymmetricKey{}}})
	if err != nil {
		t.Fatal(err)
	}
	if d.DeviceID != "new#1" || d.Authentication == nil || d.Authentication.SymmetricKey == nil || d.Authentication.SymmetricKey.PrimaryKey == "" {
		t.Errorf("created device %+v: want generated keys", d)
	}
	if _, err := c.CreateDevice(ctx, &hubapi.Device{DeviceID: "new#1"}); !hubapi.IsAlreadyExists(err) {
		t.Errorf("duplicate device: %v, want already exists", err)
	}
	if got, err := c.GetDevice(ctx, "new#1"); err != nil || got.DeviceID != "new#1" {
		t.Errorf("GetDevice = %+v, %v", got, err)
	}
	if _, err := c.GetDevice(ctx, "nobody"); !hubapi.IsNotFound(err) {
		t.Errorf("unknown device: %v, want not found", err)
	}
	devs, err := c.ListDevices(ctx)
	if err != nil || len(devs) != 5 {
		t.Errorf("ListDevices = %d devices, %v; want 5", len(devs), err)
	}

	tw, err := c.GetTwin(ctx, "online-1")
	if err != nil {
		t.Fatal(err)
	}
	if tw.DeviceID != "online-1" || tw.ETag == "" || tw.Tags["building"] != "43" {
		t.Errorf("twin %+v", tw)
	}
	patched, err := c.UpdateTwin(ctx, "online-1", &hubapi.Twin{Tags: map[string]any{"fw": "2.4.0", "building": nil},
		Properties: &hubapi.TwinProperties{Desired: map[string]any{"firmware": map[string]any{"version": "2.4.0"}}}}, tw.ETag)
	if err != nil {
		t.Fatal(err)
	}
	if patched.Tags["fw"] != "2.4.0" || patched.Tags["building"] != nil || patched.ETag == tw.ETag || patched.Version <= tw.Version {
		t.Errorf("patched twin %+v", patched)
	}
	if _, err := c.UpdateTwin(ctx, "online-1", &hubapi.Twin{Tags: map[string]any{"x": "y"}}, tw.ETag); !hubapi.IsPreconditionFailed(err) {
		t.Errorf("stale etag: %v, want precondition failed", err)
	}
	if _, err := c.UpdateTwin(ctx, "online-1", &hubapi.Twin{Tags: map[string]any{"x": "y"}}, "*"); err != nil {
		t.Errorf("unconditional patch: %v", err)
	}
	replaced, err := c.ReplaceTwin(ctx, "online-2", &hubapi.Twin{Tags: map[string]any{"only": "this"}}, "")
	if err != nil || replaced.Tags["only"] != "this" || replaced.Tags["ring"] != nil {
		t.Errorf("ReplaceTwin = %+v, %v", replaced, err)
	}
	if _, err := c.GetTwin(ctx, "nobody"); !hubapi.IsNotFound(err) {
		t.Errorf("unknown twin: %v", err)
	}
}

func TestEmulatorQueryPaging(t *testing.T) {
	c, _, tr := emuClient(t, emulator.Options{})
	ctx := context.Background()
	before := tr.count.Load()
	twins, err := hubapi.Collect[hubapi.Twin](ctx, c.Query(ctx, "SELECT * FROM devices", 1))
	if err != nil {
		t.Fatal(err)
	}
	if len(twins) != 4 {
		t.Errorf("%d twins, want 4", len(twins))
	}
	if pages := tr.count.Load() - before; pages < 4 {
		t.Errorf("%d requests for 4 twins in pages of 1", pages)
	}
	rows, err := hubapi.Collect[map[string]any](ctx, c.Query(ctx, "SELECT deviceId FROM devices WHERE tags.ring = 'canary'", 0))
	if err != nil || len(rows) != 2 {
		t.Errorf("projection = %v, %v", rows, err)
	}
	_, err = c.Query(ctx, "SELECT * FROM devices WHERE", 0).NextPage(ctx)
	var e *hubapi.Error
	if !errors.As(err, &e) || e.StatusCode != 400 {
		t.Errorf("bad query: %v, want a 400", err)
	}
}

func TestEmulatorJobs(t *testing.T) {
	c, _, _ := emuClient(t, emulator.Options{})
	ctx := context.Background()
	job, err := c.CreateJob(ctx, &hubapi.JobRequest{JobID: "twin-job-1", Type: hubapi.JobTypeUpdateTwin, QueryCondition: "tags.ring = 'canary'",
		UpdateTwin: &hubapi.Twin{Tags: map[string]any{"fwChannel": "stable"}}, MaxExecutionTimeInSeconds: 60})
	if err != nil {
		t.Fatal(err)
	}
	if job.JobID != "twin-job-1" || job.Type != hubapi.JobTypeUpdateTwin {
		t.Errorf("created job %+v", job)
	}
	if _, err := c.CreateJob(ctx, &hubapi.JobRequest{JobID: "twin-job-1", Type: hubapi.JobTypeUpdateTwin, QueryCondition: "*",
		UpdateTwin: &hubapi.Twin{Tags: map[string]any{"a": "b"}}}); !hubapi.IsAlreadyExists(err) {
		t.Errorf("duplicate job: %v, want already exists", err)
	}
	job = waitJob(t, c, "twin-job-1")
	if job.Status != hubapi.JobCompleted || job.DeviceJobStatistics == nil || job.DeviceJobStatistics.SucceededCount != 2 {
		t.Errorf("finished job %+v stats %+v", job, job.DeviceJobStatistics)
	}
	rows, err := hubapi.Collect[hubapi.DeviceJob](ctx, c.DeviceJobs(ctx, "twin-job-1", "", 1))
	if err != nil || len(rows) != 2 || rows[0].JobID != "twin-job-1" || rows[0].Status != hubapi.DeviceJobCompleted {
		t.Errorf("device jobs = %+v, %v", rows, err)
	}
	if tw, err := c.GetTwin(ctx, "online-2"); err != nil || tw.Tags["fwChannel"] != "stable" {
		t.Errorf("twin after the job: %+v, %v", tw, err)
	}

	// A method job over an online and an offline device.
	if _, err := c.CreateJob(ctx, &hubapi.JobRequest{JobID: "method-job-1", Type: hubapi.JobTypeDeviceMethod, QueryCondition: "tags.ring = 'main'",
		CloudToDeviceMethod: &hubapi.CloudToDeviceMethod{MethodName: "install", Payload: json.RawMessage(`{"v":1}`), ResponseTimeoutInSeconds: 10}}); err != nil {
		t.Fatal(err)
	}
	job = waitJob(t, c, "method-job-1")
	failed, err := hubapi.Collect[hubapi.DeviceJob](ctx, c.DeviceJobs(ctx, "method-job-1", "devices.jobs.status = 'failed'", 0))
	if err != nil || len(failed) != 1 || failed[0].DeviceID != "offline-1" {
		t.Errorf("failed device jobs = %+v, %v (job %+v)", failed, err, job)
	}

	// A job scheduled for tomorrow can be cancelled.
	tomorrow := hubapi.NewTime(time.Now().Add(24 * time.Hour))
	if _, err := c.CreateJob(ctx, &hubapi.JobRequest{JobID: "later-1", Type: hubapi.JobTypeUpdateTwin, QueryCondition: "*",
		UpdateTwin: &hubapi.Twin{Tags: map[string]any{"a": "b"}}, StartTime: &tomorrow}); err != nil {
		t.Fatal(err)
	}
	if j, err := c.CancelJob(ctx, "later-1"); err != nil || j.Status != hubapi.JobCancelled {
		t.Errorf("CancelJob = %+v, %v", j, err)
	}
	jobs, err := hubapi.Collect[hubapi.JobResponse](ctx, c.ListJobs(ctx, "", "", 1))
	if err != nil || len(jobs) != 3 {
		t.Errorf("ListJobs = %d jobs, %v; want 3", len(jobs), err)
	}
	cancelled, err := hubapi.Collect[hubapi.JobResponse](ctx, c.ListJobs(ctx, hubapi.JobTypeUpdateTwin, hubapi.JobCancelled, 0))
	if err != nil || len(cancelled) != 1 || cancelled[0].JobID != "later-1" {
		t.Errorf("ListJobs(cancelled) = %+v, %v", cancelled, err)
	}
	if _, err := c.GetJob(ctx, "no-such-job"); !hubapi.IsNotFound(err) {
		t.Errorf("unknown job: %v", err)
	}
}

// waitJob polls a job until it ends (the emulator runs jobs in real time; these take milliseconds).
func waitJob(t *testing.T, c *hubapi.Client, id string) *hubapi.JobResponse {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		j, err := c.GetJob(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if j.Terminal() {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still %s", id, j.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestEmulatorMethods(t *testing.T) {
	c, srv, _ := emuClient(t, emulator.Options{})
	ctx := context.Background()
	res, err := c.InvokeMethod(ctx, "online-1", &hubapi.CloudToDeviceMethod{MethodName: "reboot", Payload: json.RawMessage(`{"delay":5}`), ResponseTimeoutInSeconds: 10})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != 200 || !jsonEqual(t, res.Payload, `{"delay":5}`) {
		t.Errorf("result %d %s, want 200 echoing the payload", res.Status, res.Payload)
	}
	_, err = c.InvokeMethod(ctx, "offline-1", &hubapi.CloudToDeviceMethod{MethodName: "reboot"})
	if !hubapi.IsDeviceNotOnline(err) || hubapi.IsNotFound(err) {
		t.Errorf("offline device: %v, want DeviceNotOnline", err)
	}
	if st, ok := srv.DeviceStats("offline-1"); !ok || st.MethodInvocations != 1 {
		t.Errorf("offline-1 invoked %d times, want exactly 1 (no resend)", st.MethodInvocations)
	}
	if _, err := c.InvokeMethod(ctx, "nobody", &hubapi.CloudToDeviceMethod{MethodName: "reboot"}); !hubapi.IsNotFound(err) {
		t.Errorf("unknown device: %v", err)
	}
}

// TestEmulatorFaults: with a share of injected 429s, 500s, 503s and dropped connections, every idempotent
// call still succeeds through retries, waiting what the emulator's Retry-After asks. The client's clock
// is a fake that starts now (SAS tokens must be valid for the emulator) so the waits take no time.
func TestEmulatorFaults(t *testing.T) {
	clock := hubapitest.NewAutoClock(time.Now())
	c, srv, _ := emuClientWith(t, emulator.Options{Seed: 7, Faults: emulator.Faults{Throttle: 0.15, ServerError: 0.1, Unavailable: 0.1, Drop: 0.05}}, clock)
	ctx := context.Background()
	for i := range 40 {
		if _, err := c.GetTwin(ctx, "online-1"); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if _, err := c.UpdateTwin(ctx, "online-2", &hubapi.Twin{Tags: map[string]any{"n": fmt.Sprint(i)}}, ""); err != nil {
			t.Fatalf("patch %d: %v", i, err)
		}
	}
	twins, err := hubapi.Collect[hubapi.Twin](ctx, c.Query(ctx, "SELECT * FROM devices", 1))
	if err != nil || len(twins) != 4 {
		t.Errorf("query under faults: %d twins, %v", len(twins), err)
	}
	st := srv.Stats()
	if st.Faults == 0 {
		t.Fatal("no faults were injected; the test proves nothing")
	}
	if n := len(clock.Waits()); int64(n) < st.Faults {
		t.Errorf("%d waits for %d injected faults: some failure was not retried after a wait", n, st.Faults)
	}
	second := 0
	for _, w := range clock.Waits() {
		if w == time.Second {
			second++
		}
	}
	if st.Errors["ThrottlingException"] > 0 && second == 0 {
		t.Errorf("the emulator's Retry-After: 1 was never honoured: waits %v", clock.Waits())
	}
}

// TestEmulatorTLS: the emulator's generated CA, given as CAFile, is all the client needs for HTTPS.
func TestEmulatorTLS(t *testing.T) {
	srv := emulatortest.Start(t, "", emulator.Options{TLS: true, CertDir: t.TempDir()})
	if srv.CAFile() == "" {
		t.Fatal("no CA file")
	}
	c, err := hubapi.NewFromConnectionString(srv.ConnectionString(), hubapi.Options{CAFile: srv.CAFile()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateDevice(context.Background(), &hubapi.Device{DeviceID: "tls-1"}); err != nil {
		t.Fatal(err)
	}
	if tw, err := c.GetTwin(context.Background(), "tls-1"); err != nil || tw.DeviceID != "tls-1" {
		t.Errorf("GetTwin over TLS = %+v, %v", tw, err)
	}
}
