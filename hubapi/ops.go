package hubapi

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// GetDevice reads a device identity. An unknown id gives an error for which IsNotFound is true.
func (c *Client) GetDevice(ctx context.Context, id string) (*Device, error) {
	if err := checkID("device id", id); err != nil {
		return nil, err
	}
	cl := &call{name: "GetDevice", method: "GET", path: "/devices/" + escape(id), class: classRegistry, idempotent: true}
	return doJSON[Device](ctx, c, cl)
}

// CreateDevice registers d (PUT /devices/{id}, no If-Match); the hub generates SAS keys left empty. An
// existing id gives an error for which IsAlreadyExists is true — also when a retry follows an attempt
// whose answer was lost (see Error.Attempts).
func (c *Client) CreateDevice(ctx context.Context, d *Device) (*Device, error) {
	if d == nil {
		return nil, errors.New("hubapi: CreateDevice needs a device")
	}
	if err := checkID("device id", d.DeviceID); err != nil {
		return nil, err
	}
	cl := &call{name: "CreateDevice", method: "PUT", path: "/devices/" + escape(d.DeviceID), body: d, class: classRegistry, idempotent: true}
	return doJSON[Device](ctx, c, cl)
}

// ListDevices lists device identities (GET /devices). The hub returns at most 1000; use Query over
// devices for more.
func (c *Client) ListDevices(ctx context.Context) ([]Device, error) {
	cl := &call{name: "ListDevices", method: "GET", path: "/devices", class: classRegistry, idempotent: true}
	out, err := doJSON[[]Device](ctx, c, cl)
	if err != nil {
		return nil, err
	}
	return *out, nil
}

// ListConfigurations lists the hub's automatic device and module configurations (GET
// /configurations), at most top of them (0: the hub's maximum); the hub does not page them.
func (c *Client) ListConfigurations(ctx context.Context, top int) ([]Configuration, error) {
	q := url.Values{}
	if top > 0 {
		q.Set("top", strconv.Itoa(top))
	}
	cl := &call{name: "ListConfigurations", method: "GET", path: "/configurations", query: q, class: classRegistry, idempotent: true}
	out, err := doJSON[[]Configuration](ctx, c, cl)
	if err != nil {
		return nil, err
	}
	return *out, nil
}

// GetTwin reads a device twin.
func (c *Client) GetTwin(ctx context.Context, id string) (*Twin, error) {
	if err := checkID("device id", id); err != nil {
		return nil, err
	}
	cl := &call{name: "GetTwin", method: "GET", path: "/twins/" + escape(id), class: classTwinRead, idempotent: true}
	return doJSON[Twin](ctx, c, cl)
}

// UpdateTwin merge-patches tags and desired properties (PATCH /twins/{id}); a nil value removes a key.
// etag "" or "*" makes it unconditional; any other etag is sent quoted in If-Match and a mismatch gives
// an error for which IsPreconditionFailed is true. It returns the whole updated twin. A merge patch is
// safe to resend, but a conditional one resent after an attempt whose answer was lost reports
// PreconditionFailed although the patch applied.
func (c *Client) UpdateTwin(ctx context.Context, id string, patch *Twin, etag string) (*Twin, error) {
	return c.writeTwin(ctx, "UpdateTwin", "PATCH", id, patch, etag)
}

// ReplaceTwin replaces tags and desired properties wholesale (PUT /twins/{id}), with etag as for
// UpdateTwin.
func (c *Client) ReplaceTwin(ctx context.Context, id string, twin *Twin, etag string) (*Twin, error) {
	return c.writeTwin(ctx, "ReplaceTwin", "PUT", id, twin, etag)
}

func (c *Client) writeTwin(ctx context.Context, name, method, id string, twin *Twin, etag string) (*Twin, error) {
	if err := checkID("device id", id); err != nil {
		return nil, err
	}
	if twin == nil {
		return nil, fmt.Errorf("hubapi: %s needs a twin", name)
	}
	cl := &call{name: name, method: method, path: "/twins/" + escape(id), header: ifMatch(etag), body: twin, class: classTwinUpdate, idempotent: true}
	return doJSON[Twin](ctx, c, cl)
}

// Query runs a query (POST /devices/query) over devices, devices.modules or devices.jobs, pageSize
// items per page (0 leaves it to the hub, which caps pages at 100). Pages are fetched as the Pager is
// read; each one spends a query from the hub's budget.
func (c *Client) Query(ctx context.Context, query string, pageSize int) *Pager {
	p := &Pager{c: c, pageSize: pageSize, call: call{name: "Query", method: "POST", path: "/devices/query",
		body: &QuerySpecification{Query: query}, class: classQuery, idempotent: true}}
	switch {
	case strings.TrimSpace(query) == "":
		p.err = errors.New("hubapi: Query needs a query")
	case len(query) > MaxQueryLength:
		p.err = fmt.Errorf("hubapi: the query is %d characters; IoT Hub allows at most %d", len(query), MaxQueryLength)
	}
	return p
}

// DeviceJobs pages through the per-device records of a job: SELECT * FROM devices.jobs WHERE
// devices.jobs.jobId = '<jobID>', ANDed with where when it is not empty or "*". where may refer to
// job properties only (devices.jobs.status, devices.jobs.deviceId, ...). Items decode as DeviceJob.
func (c *Client) DeviceJobs(ctx context.Context, jobID string, where string, pageSize int) *Pager {
	if err := checkJobID(jobID); err != nil {
		return &Pager{err: err}
	}
	q := "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '" + jobID + "'"
	if w := strings.TrimSpace(where); w != "" && w != "*" {
		q += " AND (" + w + ")"
	}
	return c.Query(ctx, q, pageSize)
}

// CreateJob schedules a v2 job (PUT /jobs/v2/{id}). The request is checked first: a job id of at
// most 64 letters, digits and '-', a supported type with its method or twin patch, and a query
// condition within the hub's length limit. A nil StartTime is sent as now (the hub's recommendation);
// a twin job's etag is forced to "*" as the hub requires. The request is not modified. Because job ids
// are chosen by the caller, a create is safe to retry; an existing id gives an error for which
// IsAlreadyExists is true (Error.Attempts > 1 then suggests our own earlier attempt created it).
func (c *Client) CreateJob(ctx context.Context, r *JobRequest) (*JobResponse, error) {
	req, err := c.checkJob(r)
	if err != nil {
		return nil, err
	}
	cl := &call{name: "CreateJob", method: "PUT", path: "/jobs/v2/" + escape(req.JobID), body: req, class: classJobs, idempotent: true}
	return doJSON[JobResponse](ctx, c, cl)
}

func (c *Client) checkJob(r *JobRequest) (*JobRequest, error) {
	if r == nil {
		return nil, errors.New("hubapi: CreateJob needs a job request")
	}
	if err := checkJobID(r.JobID); err != nil {
		return nil, err
	}
	req := *r
	switch req.Type {
	case JobTypeDeviceMethod:
		if req.CloudToDeviceMethod == nil || req.CloudToDeviceMethod.MethodName == "" {
			return nil, fmt.Errorf("hubapi: job %s: a %s job needs cloudToDeviceMethod with a methodName", req.JobID, req.Type)
		}
		if err := checkMethod(req.CloudToDeviceMethod); err != nil {
			return nil, fmt.Errorf("hubapi: job %s: %w", req.JobID, err)
		}
		if req.UpdateTwin != nil {
			return nil, fmt.Errorf("hubapi: job %s: a %s job takes no updateTwin", req.JobID, req.Type)
		}
	case JobTypeUpdateTwin:
		if req.UpdateTwin == nil {
			return nil, fmt.Errorf("hubapi: job %s: a %s job needs updateTwin", req.JobID, req.Type)
		}
		if req.CloudToDeviceMethod != nil {
			return nil, fmt.Errorf("hubapi: job %s: a %s job takes no cloudToDeviceMethod", req.JobID, req.Type)
		}
		switch strings.Trim(req.UpdateTwin.ETag, `"`) {
		case "", "*":
			t := *req.UpdateTwin
			t.ETag = "*"
			req.UpdateTwin = &t
		default:
			return nil, fmt.Errorf("hubapi: job %s: a twin job's etag must be \"*\" (the hub rejects others)", req.JobID)
		}
	default:
		return nil, fmt.Errorf("hubapi: job %s: type %q is not a v2 job type (want %s or %s)", req.JobID, req.Type, JobTypeDeviceMethod, JobTypeUpdateTwin)
	}
	if strings.TrimSpace(req.QueryCondition) == "" {
		return nil, fmt.Errorf("hubapi: job %s: queryCondition is empty (use \"*\" for every device)", req.JobID)
	}
	if len(req.QueryCondition) > MaxQueryLength {
		return nil, fmt.Errorf("hubapi: job %s: queryCondition is %d characters; IoT Hub allows at most %d", req.JobID, len(req.QueryCondition), MaxQueryLength)
	}
	if req.MaxExecutionTimeInSeconds < 0 {
		return nil, fmt.Errorf("hubapi: job %s: maxExecutionTimeInSeconds is negative", req.JobID)
	}
	if req.StartTime == nil || req.StartTime.IsZero() {
		now := NewTime(c.clk.Now().UTC())
		req.StartTime = &now
	}
	return &req, nil
}

// GetJob reads a v2 job; an unknown id gives an error for which IsNotFound is true.
func (c *Client) GetJob(ctx context.Context, id string) (*JobResponse, error) {
	if err := checkID("job id", id); err != nil {
		return nil, err
	}
	cl := &call{name: "GetJob", method: "GET", path: "/jobs/v2/" + escape(id), class: classJobs, idempotent: true}
	return doJSON[JobResponse](ctx, c, cl)
}

// CancelJob cancels a v2 job (POST /jobs/v2/{id}/cancel, no body) and returns it, normally with status
// "cancelled". The hub is not known to cancel a job that is already running.
func (c *Client) CancelJob(ctx context.Context, id string) (*JobResponse, error) {
	if err := checkID("job id", id); err != nil {
		return nil, err
	}
	cl := &call{name: "CancelJob", method: "POST", path: "/jobs/v2/" + escape(id) + "/cancel", class: classJobs, idempotent: true}
	return doJSON[JobResponse](ctx, c, cl)
}

// ListJobs pages through v2 jobs (GET /jobs/v2/query), optionally filtered by type and status ("" for
// any). Items decode as JobResponse. Each page spends a jobs operation from the hub's budget.
func (c *Client) ListJobs(ctx context.Context, jobType, jobStatus string, pageSize int) *Pager {
	q := url.Values{}
	if jobType != "" {
		q.Set("jobType", jobType)
	}
	if jobStatus != "" {
		q.Set("jobStatus", jobStatus)
	}
	return &Pager{c: c, pageSize: pageSize, call: call{name: "ListJobs", method: "GET", path: "/jobs/v2/query", query: q, class: classJobs, idempotent: true}}
}

// InvokeMethod calls a direct method on a connected device (POST /twins/{id}/methods) and returns the
// device's answer, whose Status is the device's own (the HTTP status is 200 even when it is 500). A
// disconnected device gives IsDeviceNotOnline; a device that does not answer within
// ResponseTimeoutInSeconds gives IsGatewayTimeout. The call is resent only when it cannot have run
// (never sent, or throttled) unless Options.RetryInvoke is set.
func (c *Client) InvokeMethod(ctx context.Context, deviceID string, m *CloudToDeviceMethod) (*MethodResult, error) {
	if err := checkID("device id", deviceID); err != nil {
		return nil, err
	}
	if m == nil || m.MethodName == "" {
		return nil, errors.New("hubapi: InvokeMethod needs a method name")
	}
	if err := checkMethod(m); err != nil {
		return nil, err
	}
	resp := m.ResponseTimeoutInSeconds
	if resp == 0 {
		resp = 30
	}
	// The hub may hold the request for the connect timeout and then the response timeout.
	timeout := time.Duration(resp+m.ConnectTimeoutInSeconds)*time.Second + 30*time.Second
	cl := &call{name: "InvokeMethod", method: "POST", path: "/twins/" + escape(deviceID) + "/methods", body: m,
		class: classMethod, idempotent: c.invoke, timeout: max(timeout, c.timeout)}
	return doJSON[MethodResult](ctx, c, cl)
}

// checkMethod holds a method call to the hub's documented bounds.
func checkMethod(m *CloudToDeviceMethod) error {
	if r := m.ResponseTimeoutInSeconds; r != 0 && (r < 5 || r > 300) {
		return fmt.Errorf("method %s: responseTimeoutInSeconds must be 5 to 300, got %d", m.MethodName, r)
	}
	if ct := m.ConnectTimeoutInSeconds; ct < 0 || ct > 300 {
		return fmt.Errorf("method %s: connectTimeoutInSeconds must be 0 to 300, got %d", m.MethodName, ct)
	}
	return nil
}

// checkID rejects an empty id or one longer than the hub's 128 characters.
func checkID(what, id string) error {
	switch {
	case id == "":
		return fmt.Errorf("hubapi: the %s is empty", what)
	case len(id) > 128:
		return fmt.Errorf("hubapi: the %s is %d characters; IoT Hub allows at most 128", what, len(id))
	}
	return nil
}

// checkJobID holds a job id to the hub's rule: 1 to 64 US-ASCII letters, digits and '-'. It also makes
// the id safe to place inside a quoted query literal.
func checkJobID(id string) error {
	if id == "" || len(id) > 64 {
		return fmt.Errorf("hubapi: job id %q must be 1 to 64 characters", id)
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
			return fmt.Errorf("hubapi: job id %q may hold only letters, digits and '-'", id)
		}
	}
	return nil
}

// doJSON runs cl and decodes its success body as T.
func doJSON[T any](ctx context.Context, c *Client, cl *call) (*T, error) {
	resp, err := c.do(ctx, cl)
	if err != nil {
		return nil, err
	}
	out := new(T)
	if err := decode(resp, cl.op(), out); err != nil {
		return nil, err
	}
	return out, nil
}
