package hubapi_test

import (
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/hubapi/hubapitest"
)

// TestBadRequestsRefused: requests the hub would reject, or that cannot be what the caller meant, fail
// before anything is sent, with an error naming the problem.
func TestBadRequestsRefused(t *testing.T) {
	hub := newFakeHub(t, hubapitest.NewAutoClock(t0))
	c := hub.client(hubapi.Options{})
	ctx := context.Background()
	method := &hubapi.CloudToDeviceMethod{MethodName: "m"}
	twin := &hubapi.Twin{Tags: map[string]any{"a": "b"}}
	job := func(mod func(*hubapi.JobRequest)) error {
		r := &hubapi.JobRequest{JobID: "job-1", Type: hubapi.JobTypeDeviceMethod, CloudToDeviceMethod: method, QueryCondition: "*"}
		mod(r)
		_, err := c.CreateJob(ctx, r)
		return err
	}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"empty device id", func() error { _, err := c.GetTwin(ctx, ""); return err }(), "device id is empty"},
		{"long device id", func() error { _, err := c.GetDevice(ctx, strings.Repeat("x", 129)); return err }(), "at most 128"},
		{"nil patch", func() error { _, err := c.UpdateTwin(ctx, "d", nil, ""); return err }(), "needs a twin"},
		{"nil device", func() error { _, err := c.CreateDevice(ctx, nil); return err }(), "needs a device"},
		{"no method name", func() error { _, err := c.InvokeMethod(ctx, "d", &hubapi.CloudToDeviceMethod{}); return err }(), "method name"},
		{"response timeout", func() error {
			_, err := c.InvokeMethod(ctx, "d", &hubapi.CloudToDeviceMethod{MethodName: "m", ResponseTimeoutInSeconds: 301})
			return err
		}(), "5 to 300"},
		{"connect timeout", func() error {
			_, err := c.InvokeMethod(ctx, "d", &hubapi.CloudToDeviceMethod{MethodName: "m", ConnectTimeoutInSeconds: -1})
			return err
		}(), "0 to 300"},
		{"nil job", func() error { _, err := c.CreateJob(ctx, nil); return err }(), "needs a job request"},
		{"job id chars", job(func(r *hubapi.JobRequest) { r.JobID = "job_1" }), "letters, digits and '-'"},
		{"job id length", job(func(r *hubapi.JobRequest) { r.JobID = strings.Repeat("a", 65) }), "1 to 64"},
		{"job type", job(func(r *hubapi.JobRequest) { r.Type = "scheduleTwinUpdate" }), "not a v2 job type"},
		{"no method", job(func(r *hubapi.JobRequest) { r.CloudToDeviceMethod = nil }), "needs cloudToDeviceMethod"},
		{"both", job(func(r *hubapi.JobRequest) { r.UpdateTwin = twin }), "takes no updateTwin"},
		{"no twin", job(func(r *hubapi.JobRequest) { r.Type, r.CloudToDeviceMethod = hubapi.JobTypeUpdateTwin, nil }), "needs updateTwin"},
		{"twin etag", job(func(r *hubapi.JobRequest) {
			r.Type, r.CloudToDeviceMethod, r.UpdateTwin = hubapi.JobTypeUpdateTwin, nil, &hubapi.Twin{ETag: "AAAAAAAAAAE="}
		}), `etag must be "*"`},
		{"no condition", job(func(r *hubapi.JobRequest) { r.QueryCondition = " " }), "queryCondition is empty"},
		{"long condition", job(func(r *hubapi.JobRequest) { r.QueryCondition = strings.Repeat("x", 8193) }), "at most 8192"},
		{"negative max time", job(func(r *hubapi.JobRequest) { r.MaxExecutionTimeInSeconds = -1 }), "negative"},
	}
	for _, tt := range tests {
		if tt.err == nil || !strings.Contains(tt.err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want it to contain %q", tt.name, tt.err, tt.want)
		}
	}
	if n := len(hub.requests()); n != 0 {
		t.Errorf("%d requests were sent", n)
	}
}

// TestCreateJobLeavesRequestAlone: the client fills in the start time and the twin etag on its own
// copy.
func TestCreateJobLeavesRequestAlone(t *testing.T) {
	hub := newFakeHub(t, hubapitest.NewAutoClock(t0))
	hub.queue(ok(jobJSON))
	tw := &hubapi.Twin{Tags: map[string]any{"a": "b"}}
	r := &hubapi.JobRequest{JobID: "job-1", Type: hubapi.JobTypeUpdateTwin, UpdateTwin: tw, QueryCondition: "*"}
	if _, err := hub.client(hubapi.Options{}).CreateJob(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if r.StartTime != nil || r.UpdateTwin != tw || tw.ETag != "" {
		t.Errorf("the request was modified: %+v, twin %+v", r, tw)
	}
}

// TestOptionsErrors: contradictory or broken options fail at construction.
func TestOptionsErrors(t *testing.T) {
	cs := testConnString("h.example")
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	os.WriteFile(notPEM, []byte("not a certificate"), 0o600)
	tests := []struct {
		name string
		opts hubapi.Options
		want string
	}{
		{"plain with CA", hubapi.Options{PlainHTTP: true, CAFile: notPEM}, "no use with PlainHTTP"},
		{"client with CA", hubapi.Options{HTTPClient: http.DefaultClient, CAFile: notPEM}, "either HTTPClient or CAFile"},
		{"missing CA", hubapi.Options{CAFile: filepath.Join(dir, "absent.pem")}, "reading CA file"},
		{"not PEM", hubapi.Options{CAFile: notPEM}, "no PEM certificate"},
	}
	for _, tt := range tests {
		if _, err := hubapi.NewFromConnectionString(cs, tt.opts); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
	}
	if _, err := hubapi.NewWithCredential("https://h", &stubCredential{}, hubapi.Options{}); err == nil {
		t.Error("a host with a scheme was accepted")
	}
	if _, err := hubapi.NewWithCredential("h", nil, hubapi.Options{}); err == nil {
		t.Error("a nil credential was accepted")
	}
	if _, err := hubapi.New(hubapi.ConnectionString{HostName: "h", KeyName: "p"}, hubapi.Options{}); err == nil {
		t.Error("a connection string without a key was accepted")
	}
}

// TestCAFile: a local HTTPS endpoint is trusted through CAFile, and refused (without retrying) when the
// CA is not given.
func TestCAFile(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(twinJSON))
	}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(srv.URL, "https://")
	clock := hubapitest.NewAutoClock(t0)
	c, err := hubapi.NewFromConnectionString(testConnString(host), hubapi.Options{CAFile: ca, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetTwin(context.Background(), "dev1"); err != nil {
		t.Fatalf("with the CA: %v", err)
	}
	c, _ = hubapi.NewFromConnectionString(testConnString(host), hubapi.Options{Clock: clock})
	_, err = c.GetTwin(context.Background(), "dev1")
	if err == nil || !strings.Contains(err.Error(), "certificate") || hubapi.IsRetryable(err) || len(clock.Waits()) != 0 {
		t.Errorf("without the CA: err = %v, waits %v; want a certificate error, not retried", err, clock.Waits())
	}
}
