package emulator

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/iot-rollout/rollout/hubapi"
)

// putJob serves PUT /jobs/v2/{id}: it creates a job and starts its runner.
func (s *Server) putJob(w http.ResponseWriter, r *http.Request, id string) error {
	if !validJobID(id) {
		return hubErr(hubapi.CodeArgumentInvalid, "The job id %q is invalid: use at most 64 letters, digits and '-'", id)
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	req, tw, err := parseJobRequest(id, body, s.quotas.MaxQueryLength)
	if err != nil {
		return err
	}
	resp, err := s.createJob(req, tw)
	if err != nil {
		return err
	}
	return writeOK(w, resp)
}

// getJob serves GET /jobs/v2/{id}.
func (s *Server) getJob(w http.ResponseWriter, id string) error {
	resp, err := s.jobs.response(id)
	if err != nil {
		return err
	}
	return writeOK(w, resp)
}

// listJobs serves GET /jobs/v2/query with optional jobType and jobStatus filters (matched
// case-insensitively, as the SDKs send them differently) and header paging.
func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) error {
	return s.servePaged(w, r, QuotaJobOps, func() (*cursor, error) {
		typ, status := r.URL.Query().Get("jobType"), r.URL.Query().Get("jobStatus")
		jobs := s.jobs.filter(typ, status)
		return &cursor{itemType: hubapi.ItemTypeJobResponse, n: len(jobs), render: s.jobs.responsesRenderer(jobs)}, nil
	})
}

// parseJobRequest decodes and checks a job creation body. Errors are the hub's: 400 GenericBadRequest for
// a wrong job type, 400 ArgumentNull or ArgumentInvalid for missing or bad fields, 412 PreconditionFailed
// for an update job whose etag is not "*" or a condition over the query size limit.
func parseJobRequest(pathID string, body []byte, maxQuery int) (*hubapi.JobRequest, *twinWrite, error) {
	var req hubapi.JobRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, nil, hubErr(hubapi.CodeIotHubFormatError, "The job request is not valid JSON: %v", err)
	}
	if req.JobID == "" {
		req.JobID = pathID
	}
	if req.JobID != pathID {
		return nil, nil, hubErr(hubapi.CodeArgumentInvalid, "The jobId in the body (%s) differs from the one in the path (%s)", req.JobID, pathID)
	}
	var w *twinWrite
	switch req.Type {
	case hubapi.JobTypeDeviceMethod:
		m := req.CloudToDeviceMethod
		if m == nil || m.MethodName == "" {
			return nil, nil, hubErr(hubapi.CodeArgumentNull, "cloudToDeviceMethod.methodName is required for a scheduleDeviceMethod job")
		}
		if err := checkMethod(m); err != nil {
			return nil, nil, err
		}
		req.UpdateTwin = nil
	case hubapi.JobTypeUpdateTwin:
		var raw struct {
			UpdateTwin map[string]json.RawMessage `json:"updateTwin"`
		}
		_ = json.Unmarshal(body, &raw)
		if req.UpdateTwin == nil || raw.UpdateTwin == nil {
			return nil, nil, hubErr(hubapi.CodeArgumentNull, "updateTwin is required for a scheduleUpdateTwin job")
		}
		if _, ok := raw.UpdateTwin["desired"]; ok {
			return nil, nil, hubErr(hubapi.CodeArgumentInvalid, "updateTwin has a top-level 'desired'; desired properties go under properties.desired")
		}
		if strings.Trim(strings.TrimSpace(req.UpdateTwin.ETag), `"`) != "*" {
			return nil, nil, hubErr(hubapi.CodePreconditionFailed, "A scheduleUpdateTwin job needs updateTwin.etag \"*\"")
		}
		var err error
		if w, err = patchWrite(req.UpdateTwin); err != nil {
			return nil, nil, err
		}
		req.CloudToDeviceMethod = nil
		req.UpdateTwin = &hubapi.Twin{ETag: "*", Tags: req.UpdateTwin.Tags, Properties: req.UpdateTwin.Properties}
	default:
		return nil, nil, hubErr(hubapi.CodeGenericBadRequest, "BadRequest")
	}
	if strings.TrimSpace(req.QueryCondition) == "" {
		return nil, nil, hubErr(hubapi.CodeArgumentNull, "queryCondition is required; use * for every device")
	}
	if len(req.QueryCondition) > maxQuery {
		// The hub answers an oversized job condition with 412 (reference: query-and-jobs §2.2).
		return nil, nil, hubErr(hubapi.CodePreconditionFailed, "The query condition is %d characters long; the limit is %d", len(req.QueryCondition), maxQuery)
	}
	if req.MaxExecutionTimeInSeconds < 0 {
		return nil, nil, hubErr(hubapi.CodeArgumentInvalid, "maxExecutionTimeInSeconds must not be negative")
	}
	if req.MaxExecutionTimeInSeconds == 0 {
		req.MaxExecutionTimeInSeconds = defaultMaxExecution
	}
	return &req, w, nil
}

// cancelJob serves POST /jobs/v2/{id}/cancel.
func (s *Server) cancelJob(w http.ResponseWriter, id string) error {
	resp, err := s.jobs.cancel(id, time.Now().UnixNano())
	if err != nil {
		return err
	}
	return writeOK(w, resp)
}
