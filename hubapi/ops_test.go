package hubapi_test

import (
	"context"
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/hubapi/hubapitest"
)

const twinJSON = `{"deviceId":"dev1","etag":"AAAAAAAAAAE=","deviceEtag":"NjEyMDQ0NTEz","status":"enabled",
 "statusUpdateTime":"0001-01-01T00:00:00Z","connectionState":"Disconnected",
 "lastActivityTime":"0001-01-01T00:00:00Z","cloudToDeviceMessageCount":0,"authenticationType":"sas",
 "x509Thumbprint":{"primaryThumbprint":null,"secondaryThumbprint":null},"version":2,
 "tags":{"building":"43"},
 "properties":{"desired":{"$metadata":{"$lastUpdated":"2021-07-07T20:45:23.9479543Z"},"$version":1},
   "reported":{"$metadata":{"$lastUpdated":"2021-07-07T20:45:23.9479543Z"},"$version":1}},
 "capabilities":{"iotEdge":false}}`

const jobJSON = `{"jobId":"job-1","type":"scheduleUpdateTwin","status":"completed",
 "createdTime":"2020-01-06T21:44:00.8884134Z","startTime":"2020-01-06T21:44:00.8884134Z","endTime":"2020-01-06T21:44:06.2536519Z",
 "maxExecutionTimeInSeconds":300,"queryCondition":"deviceId in ['a','b']",
 "updateTwin":{"deviceId":null,"etag":"*","tags":{"deviceClass":"Class1"}},
 "deviceJobStatistics":{"deviceCount":2,"failedCount":0,"pendingCount":0,"runningCount":0,"succeededCount":2}}`

const deviceJSON = `{"deviceId":"dev#1","generationId":"638","etag":"NjEyMDQ0NTEz","connectionState":"Disconnected",
 "status":"enabled","connectionStateUpdatedTime":"0001-01-01T00:00:00","lastActivityTime":"0001-01-01T00:00:00",
 "cloudToDeviceMessageCount":0,"authentication":{"symmetricKey":{"primaryKey":"a2V5MQ==","secondaryKey":"a2V5Mg=="},"type":"sas"},
 "capabilities":{"iotEdge":false}}`

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// TestOperationRequests checks, for every operation, the exact request on the wire and what the client
// makes of the hub's answer. The fake hub also holds each request to the swagger.
func TestOperationRequests(t *testing.T) {
	start := hubapi.NewTime(time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC))
	tests := []struct {
		name     string
		reply    reply
		run      func(context.Context, *hubapi.Client) (any, error)
		method   string
		path     string
		query    map[string]string // besides api-version
		headers  map[string]string // "" means must be absent
		body     string            // "" means no body
		check    func(t *testing.T, got any)
		pageSize int
	}{
		{
			name: "GetDevice", reply: ok(deviceJSON), method: "GET", path: "/devices/dev%231",
			run: func(ctx context.Context, c *hubapi.Client) (any, error) { return c.GetDevice(ctx, "dev#1") },
			check: func(t *testing.T, got any) {
				d := got.(*hubapi.Device)
				if d.DeviceID != "dev#1" || d.ETag != "NjEyMDQ0NTEz" || d.Authentication.Type != "sas" || d.ConnectionStateUpdatedTime == nil {
					t.Errorf("device = %+v", d)
				}
			},
		},
		{
			name: "CreateDevice", reply: ok(deviceJSON), method: "PUT", path: "/devices/dev%231",
			headers: map[string]string{"If-Match": ""},
			run: func(ctx context.Context, c *hubapi.Client) (any, error) {
				return c.CreateDevice(ctx, &hubapi.Device{DeviceID: "dev#1", Authentication: &hubapi.AuthenticationMechanism{Type: "sas", SymmetricKey: &hubapi.SymmetricKey{}}})
			},
			body: `{"deviceId":"dev#1","authentication":{"symmetricKey":{"primaryKey":"","secondaryKey":""},"type":"sas"}}`,
		},
		{
			name: "ListDevices", reply: ok("[" + deviceJSON + "," + deviceJSON + "]"), method: "GET", path: "/devices",
			run: func(ctx context.Context, c *hubapi.Client) (any, error) { return c.ListDevices(ctx) },
			check: func(t *testing.T, got any) {
				if ds := got.([]hubapi.Device); len(ds) != 2 || ds[1].DeviceID != "dev#1" {
					t.Errorf("devices = %+v", ds)
				}
			},
		},
		{
			name: "GetTwin", reply: ok(twinJSON), method: "GET", path: "/twins/a%2Bb%3Fc%25d",
			run: func(ctx context.Context, c *hubapi.Client) (any, error) { return c.GetTwin(ctx, "a+b?c%d") },
			check: func(t *testing.T, got any) {
				tw := got.(*hubapi.Twin)
				if tw.DeviceID != "dev1" || tw.ETag != "AAAAAAAAAAE=" || tw.Version != 2 || tw.Tags["building"] != "43" ||
					tw.Properties.Desired["$version"] != float64(1) || tw.StatusUpdateTime == nil || !tw.StatusUpdateTime.Equal(time.Time{}) {
					t.Errorf("twin = %+v", tw)
				}
			},
		},
		{
			name: "UpdateTwin etag", reply: ok(twinJSON), method: "PATCH", path: "/twins/dev1",
			headers: map[string]string{"If-Match": `"AAAAAAAAAAE="`},
			run: func(ctx context.Context, c *hubapi.Client) (any, error) {
				return c.UpdateTwin(ctx, "dev1", &hubapi.Twin{Tags: map[string]any{"ring": "canary", "old": nil},
					Properties: &hubapi.TwinProperties{Desired: map[string]any{"firmware": map[string]any{"version": "2.4.0"}}}}, "AAAAAAAAAAE=")
			},
			body: `{"tags":{"ring":"canary","old":null},"properties":{"desired":{"firmware":{"version":"2.4.0"}}}}`,
		},
		{
			name: "UpdateTwin star", reply: ok(twinJSON), method: "PATCH", path: "/twins/dev1",
			headers: map[string]string{"If-Match": `"*"`},
			run: func(ctx context.Context, c *hubapi.Client) (any, error) {
				return c.UpdateTwin(ctx, "dev1", &hubapi.Twin{Tags: map[string]any{"a": "b"}}, "*")
			},
			body: `{"tags":{"a":"b"}}`,
		},
		{
			name: "UpdateTwin unconditional", reply: ok(twinJSON), method: "PATCH", path: "/twins/dev1",
			headers: map[string]string{"If-Match": ""},
			run: func(ctx context.Context, c *hubapi.Client) (any, error) {
				return c.UpdateTwin(ctx, "dev1", &hubapi.Twin{Tags: map[string]any{"a": "b"}}, "")
			},
			body: `{"tags":{"a":"b"}}`,
		},
		{
			name: "ReplaceTwin", reply: ok(twinJSON), method: "PUT", path: "/twins/dev1",
			headers: map[string]string{"If-Match": `"AAAAAAAAAAI="`},
			run: func(ctx context.Context, c *hubapi.Client) (any, error) {
				return c.ReplaceTwin(ctx, "dev1", &hubapi.Twin{Tags: map[string]any{"a": "b"}, Properties: &hubapi.TwinProperties{Desired: map[string]any{}}}, `"AAAAAAAAAAI="`)
			},
			body: `{"tags":{"a":"b"},"properties":{}}`,
		},
		{
			name: "Query", reply: reply{status: 200, body: "[" + twinJSON + "]", header: map[string]string{"x-ms-item-type": "Twin"}},
			method: "POST", path: "/devices/query", headers: map[string]string{"x-ms-max-item-count": "50", "x-ms-continuation": ""},
			run: func(ctx context.Context, c *hubapi.Client) (any, error) {
				return hubapi.Collect[hubapi.Twin](ctx, c.Query(ctx, "SELECT * FROM devices WHERE tags.building = '43'", 50))
			},
			body: `{"query":"SELECT * FROM devices WHERE tags.building = '43'"}`,
			check: func(t *testing.T, got any) {
				if tw := got.([]hubapi.Twin); len(tw) != 1 || tw[0].DeviceID != "dev1" {
					t.Errorf("twins = %+v", tw)
				}
			},
		},
		{
			name: "DeviceJobs", reply: ok(`[{"deviceId":"d1","jobId":"job-1","jobType":"scheduleDeviceMethod","status":"failed",
			 "startTimeUtc":"2024-05-04T15:53:00.0770000","endTimeUtc":"2024-05-04T15:53:02.1000000",
			 "createdDateTimeUtc":"2024-05-04T15:53:00.2000000Z","lastUpdatedDateTimeUtc":"2024-05-04T15:53:02.1000000Z",
			 "outcome":{"deviceMethodResponse":null},"error":{"code":"DeviceNotOnline","description":"offline"}}]`),
			method: "POST", path: "/devices/query", headers: map[string]string{"x-ms-max-item-count": "100"},
			run: func(ctx context.Context, c *hubapi.Client) (any, error) {
				return hubapi.Collect[hubapi.DeviceJob](ctx, c.DeviceJobs(ctx, "job-1", "devices.jobs.status = 'failed'", 100))
			},
			body: `{"query":"SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'job-1' AND (devices.jobs.status = 'failed')"}`,
			check: func(t *testing.T, got any) {
				dj := got.([]hubapi.DeviceJob)
				if len(dj) != 1 || dj[0].Status != hubapi.DeviceJobFailed || dj[0].Error.Code != "DeviceNotOnline" ||
					!dj[0].StartTimeUTC.Equal(time.Date(2024, 5, 4, 15, 53, 0, 77e6, time.UTC)) {
					t.Errorf("device jobs = %+v", dj)
				}
			},
		},
		{
			name: "CreateJob method", reply: ok(`{"jobId":"job-1","type":"scheduleDeviceMethod","status":"queued"}`),
			method: "PUT", path: "/jobs/v2/job-1",
			run: func(ctx context.Context, c *hubapi.Client) (any, error) {
				return c.CreateJob(ctx, &hubapi.JobRequest{JobID: "job-1", Type: hubapi.JobTypeDeviceMethod, QueryCondition: "deviceId IN ['a','b']",
					CloudToDeviceMethod: &hubapi.CloudToDeviceMethod{MethodName: "install", Payload: json.RawMessage(`{"version":"2.4.0"}`), ResponseTimeoutInSeconds: 30, ConnectTimeoutInSeconds: 10},
					StartTime:           &start, MaxExecutionTimeInSeconds: 1800})
			},
			body: `{"jobId":"job-1","type":"scheduleDeviceMethod","cloudToDeviceMethod":{"methodName":"install","payload":{"version":"2.4.0"},"responseTimeoutInSeconds":30,"connectTimeoutInSeconds":10},
			 "queryCondition":"deviceId IN ['a','b']","startTime":"2026-02-03T04:05:06.0000000Z","maxExecutionTimeInSeconds":1800}`,
			check: func(t *testing.T, got any) {
				if j := got.(*hubapi.JobResponse); j.Status != hubapi.JobQueued || j.JobID != "job-1" {
					t.Errorf("job = %+v", j)
				}
			},
		},
		{
			name: "CreateJob twin", reply: ok(jobJSON), method: "PUT", path: "/jobs/v2/job-1",
			run: func(ctx context.Context, c *hubapi.Client) (any, error) {
				return c.CreateJob(ctx, &hubapi.JobRequest{JobID: "job-1", Type: hubapi.JobTypeUpdateTwin, QueryCondition: "*",
					UpdateTwin: &hubapi.Twin{Tags: map[string]any{"fwChannel": "stable"}, Properties: &hubapi.TwinProperties{Desired: map[string]any{"firmware": map[string]any{"version": "2.4.0"}}}}})
			},
			// No start time given: the client sends the fake clock's now; the etag is forced to "*".
			body: `{"jobId":"job-1","type":"scheduleUpdateTwin","updateTwin":{"etag":"*","tags":{"fwChannel":"stable"},"properties":{"desired":{"firmware":{"version":"2.4.0"}}}},
			 "queryCondition":"*","startTime":"2026-01-01T00:00:00.0000000Z"}`,
			check: func(t *testing.T, got any) {
				j := got.(*hubapi.JobResponse)
				if !j.Terminal() || j.DeviceJobStatistics.SucceededCount != 2 || !j.EndTime.Equal(time.Date(2020, 1, 6, 21, 44, 6, 253651900, time.UTC)) {
					t.Errorf("job = %+v", j)
				}
			},
		},
		{
			name: "GetJob", reply: ok(jobJSON), method: "GET", path: "/jobs/v2/job-1",
			run: func(ctx context.Context, c *hubapi.Client) (any, error) { return c.GetJob(ctx, "job-1") },
		},
		{
			name: "CancelJob", reply: ok(`{"jobId":"job-1","type":"scheduleUpdateTwin","status":"cancelled"}`),
			method: "POST", path: "/jobs/v2/job-1/cancel", headers: map[string]string{"Content-Type": "", "Content-Length": "0"},
			run: func(ctx context.Context, c *hubapi.Client) (any, error) { return c.CancelJob(ctx, "job-1") },
			check: func(t *testing.T, got any) {
				if j := got.(*hubapi.JobResponse); j.Status != hubapi.JobCancelled {
					t.Errorf("job = %+v", j)
				}
			},
		},
		{
			name: "ListJobs", reply: ok("[" + jobJSON + "]"), method: "GET", path: "/jobs/v2/query",
			query:   map[string]string{"jobType": "scheduleUpdateTwin", "jobStatus": "completed"},
			headers: map[string]string{"x-ms-max-item-count": "10"},
			run: func(ctx context.Context, c *hubapi.Client) (any, error) {
				return hubapi.Collect[hubapi.JobResponse](ctx, c.ListJobs(ctx, hubapi.JobTypeUpdateTwin, hubapi.JobCompleted, 10))
			},
			check: func(t *testing.T, got any) {
				if js := got.([]hubapi.JobResponse); len(js) != 1 || js[0].JobID != "job-1" {
					t.Errorf("jobs = %+v", js)
				}
			},
		},
		{
			name: "InvokeMethod", reply: ok(`{"status":200,"payload":{"rebooted":true}}`), method: "POST", path: "/twins/dev1/methods",
			run: func(ctx context.Context, c *hubapi.Client) (any, error) {
				return c.InvokeMethod(ctx, "dev1", &hubapi.CloudToDeviceMethod{MethodName: "reboot", Payload: json.RawMessage(`{"delay":5}`), ResponseTimeoutInSeconds: 30})
			},
			body: `{"methodName":"reboot","payload":{"delay":5},"responseTimeoutInSeconds":30,"connectTimeoutInSeconds":0}`,
			check: func(t *testing.T, got any) {
				if r := got.(*hubapi.MethodResult); r.Status != 200 || string(r.Payload) != `{"rebooted":true}` {
					t.Errorf("result = %+v", r)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hub := newFakeHub(t, hubapitest.NewAutoClock(t0))
			hub.queue(tt.reply)
			got, err := tt.run(context.Background(), hub.client(hubapi.Options{}))
			if err != nil {
				t.Fatal(err)
			}
			reqs := hub.requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.Method != tt.method || r.Path != tt.path {
				t.Errorf("request %s %s, want %s %s", r.Method, r.Path, tt.method, tt.path)
			}
			wantQuery := map[string]string{"api-version": "2021-04-12"}
			for k, v := range tt.query {
				wantQuery[k] = v
			}
			if len(r.Query) != len(wantQuery) {
				t.Errorf("query %v, want %v", r.Query, wantQuery)
			}
			for k, v := range wantQuery {
				if r.Query.Get(k) != v {
					t.Errorf("query %s = %q, want %q", k, r.Query.Get(k), v)
				}
			}
			checkCommonHeaders(t, hub, r, tt.body != "")
			for k, v := range tt.headers {
				if got := r.Header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			switch {
			case tt.body == "" && len(r.Body) != 0:
				t.Errorf("body %s, want none", r.Body)
			case tt.body != "" && !jsonEqual(t, r.Body, tt.body):
				t.Errorf("body\n got %s\nwant %s", r.Body, tt.body)
			}
			if tt.check != nil {
				tt.check(t, got)
			}
		})
	}
}

// checkCommonHeaders checks what every request carries: a SAS token for the host valid an hour from the
// fake clock's now, a Request-Id, Accept and User-Agent, and a JSON Content-Type exactly when there is
// a body.
func checkCommonHeaders(t *testing.T, hub *fakeHub, r recorded, hasBody bool) {
	t.Helper()
	auth := r.Header.Get("Authorization")
	wantPrefix := "SharedAccessSignature sr=" + strings.ReplaceAll(hub.host(), ":", "%3A") + "&sig="
	wantSuffix := "&se=" + strconv.FormatInt(r.At.Add(time.Hour).Unix(), 10) + "&skn=iothubowner"
	if !strings.HasPrefix(auth, wantPrefix) || !strings.HasSuffix(auth, wantSuffix) {
		t.Errorf("Authorization = %q, want %s...%s", auth, wantPrefix, wantSuffix)
	}
	if id := r.Header.Get("Request-Id"); !uuidRE.MatchString(id) {
		t.Errorf("Request-Id = %q, want a UUID v4", id)
	}
	if a := r.Header.Get("Accept"); a != "application/json" {
		t.Errorf("Accept = %q", a)
	}
	if ua := r.Header.Get("User-Agent"); !strings.Contains(ua, "rollout-hubapi") {
		t.Errorf("User-Agent = %q", ua)
	}
	ct := r.Header.Get("Content-Type")
	if hasBody && ct != "application/json; charset=utf-8" || !hasBody && ct != "" {
		t.Errorf("Content-Type = %q with body=%v", ct, hasBody)
	}
}

// TestSwaggerCheckerRejects proves the swagger check can fail: a wrong path, an undeclared header, a
// misspelt field, a wrong type and a missing body are all reported.
func TestSwaggerCheckerRejects(t *testing.T) {
	sw := loadSwagger(t)
	tests := []struct{ name, method, target, header, body, want string }{
		{"unknown path", "GET", "/twin/d1?api-version=2021-04-12", "", "", "not an operation"},
		{"wrong method", "DELETE", "/twins/d1?api-version=2021-04-12", "", "", "not an operation"},
		{"api-version", "GET", "/twins/d1?api-version=2020-09-30", "", "", "api-version"},
		{"undeclared header", "GET", "/twins/d1?api-version=2021-04-12", "x-ms-continuation", "", "not declared"},
		{"misspelt field", "PUT", "/jobs/v2/j?api-version=2021-04-12", "", `{"jobId":"j","type":"scheduleUpdateTwin","queryCondtion":"*"}`, "queryCondtion"},
		{"wrong type", "POST", "/twins/d1/methods?api-version=2021-04-12", "", `{"methodName":"m","responseTimeoutInSeconds":"30"}`, "responseTimeoutInSeconds"},
		{"bad date", "PUT", "/jobs/v2/j?api-version=2021-04-12", "", `{"jobId":"j","startTime":"tomorrow"}`, "startTime"},
		{"bad enum", "PUT", "/jobs/v2/j?api-version=2021-04-12", "", `{"jobId":"j","type":"scheduleTwinUpdate"}`, "type"},
		{"missing body", "POST", "/devices/query?api-version=2021-04-12", "", "", "missing"},
		{"body on cancel", "POST", "/jobs/v2/j/cancel?api-version=2021-04-12", "", `{}`, "takes no body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptestRequest(tt.method, tt.target, tt.body)
			if tt.header != "" {
				r.Header.Set(tt.header, "x")
			}
			err := sw.Check(r, []byte(tt.body))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Check = %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
}
