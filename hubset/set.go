package hubset

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sort"
	"sync"

	"github.com/iot-rollout/rollout/engine"
	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/plan"
)

// Set is an engine.Hub over several named hubs (see the package documentation). Its methods are
// safe for concurrent use.
type Set struct {
	hubs  map[string]engine.Hub
	names []string // the hubs of this view, sorted
}

// New returns a Set over hubs, keyed by the plan's hub names. It panics when hubs is empty or a name
// holds plan.HubSeparator, which a loaded plan never allows.
func New(hubs map[string]engine.Hub) *Set {
	if len(hubs) == 0 {
		panic("hubset: no hubs")
	}
	s := &Set{hubs: hubs}
	for name := range hubs {
		if _, _, ok := plan.SplitID(name); ok {
			panic(fmt.Sprintf("hubset: hub name %q holds %q", name, plan.HubSeparator))
		}
		s.names = append(s.names, name)
	}
	sort.Strings(s.names)
	return s
}

// Names lists the hubs of the view, sorted.
func (s *Set) Names() []string { return slices.Clone(s.names) }

// For returns the view of s restricted to hubs (names s does not hold are ignored); queries without
// qualified ids run on those hubs only. Twins and jobs of other hubs stay reachable by qualified id.
func (s *Set) For(hubs []string) engine.Hub {
	v := &Set{hubs: s.hubs}
	for _, n := range s.names {
		if slices.Contains(hubs, n) {
			v.names = append(v.names, n)
		}
	}
	return v
}

// PartedJobs reports that a job of a Set is made of parts on several hubs, which a lookup by id
// cannot prove complete: the engine re-creates such a job after a crash instead of looking it up.
func (s *Set) PartedJobs() bool { return true }

// route splits a qualified id into its hub's client and the hub's own device id.
func (s *Set) route(id string) (engine.Hub, string, string, error) {
	name, dev, ok := plan.SplitID(id)
	if !ok {
		return nil, "", "", fmt.Errorf("hubset: device id %q names no hub (expected HUB%sDEVICE)", id, plan.HubSeparator)
	}
	h, ok := s.hubs[name]
	if !ok {
		return nil, "", "", fmt.Errorf("hubset: device %q is on hub %q, which the plan does not name", id, name)
	}
	return h, name, dev, nil
}

// GetTwin reads the twin of a qualified device id from its hub; the twin's deviceId is qualified.
func (s *Set) GetTwin(ctx context.Context, id string) (*hubapi.Twin, error) {
	h, name, dev, err := s.route(id)
	if err != nil {
		return nil, err
	}
	t, err := h.GetTwin(ctx, dev)
	if err != nil {
		return nil, hubError(name, err)
	}
	t.DeviceID = plan.QualifyID(name, t.DeviceID)
	return t, nil
}

// UpdateTwin patches the twin of a qualified device id on its hub.
func (s *Set) UpdateTwin(ctx context.Context, id string, patch *hubapi.Twin, etag string) (*hubapi.Twin, error) {
	h, name, dev, err := s.route(id)
	if err != nil {
		return nil, err
	}
	if patch != nil && patch.DeviceID != "" {
		p := *patch
		p.DeviceID = dev
		patch = &p
	}
	t, err := h.UpdateTwin(ctx, dev, patch, etag)
	if err != nil {
		return nil, hubError(name, err)
	}
	t.DeviceID = plan.QualifyID(name, t.DeviceID)
	return t, nil
}

// HubError is an error of one hub of a Set: it names the hub, and the hub's own error stays
// reachable with errors.As, so hubapi.IsNotFound and the like still hold. Errors of several hubs at
// once are joined, one HubError each.
type HubError struct {
	Hub string
	Err error
}

func (e *HubError) Error() string { return "hub " + e.Hub + ": " + e.Err.Error() }
func (e *HubError) Unwrap() error { return e.Err }

func hubError(name string, err error) error {
	return &HubError{Hub: name, Err: err}
}

// each runs fn for every hub of names concurrently and returns the errors joined, each naming its hub.
func (s *Set) each(names []string, fn func(name string, h engine.Hub) error) error {
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(n, s.hubs[n]); err != nil {
				errs[i] = hubError(n, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// CreateJob creates the job's part on every hub its condition has devices on, concurrently, each
// with the hub's own ids. It succeeds when every part was created or existed, and fails with an
// AlreadyExists error only when every part existed; a part that failed otherwise fails the whole
// create (the parts made stay, and a re-create makes only the missing ones).
func (s *Set) CreateJob(ctx context.Context, r *hubapi.JobRequest) (*hubapi.JobResponse, error) {
	parts, err := s.splitCondition(r.QueryCondition)
	if err != nil {
		return nil, fmt.Errorf("job %s: %w", r.JobID, err)
	}
	names := sortedKeys(parts)
	resps := make([]*hubapi.JobResponse, len(names))
	existed := make([]bool, len(names))
	err = s.each(names, func(name string, h engine.Hub) error {
		i := slices.Index(names, name)
		req := *r
		req.QueryCondition = parts[name]
		resp, err := h.CreateJob(ctx, &req)
		switch {
		case err == nil:
			resps[i] = resp
		case hubapi.IsAlreadyExists(err):
			existed[i] = true
		default:
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !slices.Contains(existed, false) {
		return nil, &hubapi.Error{StatusCode: http.StatusConflict, Code: hubapi.CodeJobAlreadyExists, Op: "PUT /jobs/v2/" + r.JobID,
			Message: fmt.Sprintf("job %s exists on every hub it has devices on (%v)", r.JobID, names)}
	}
	out := &hubapi.JobResponse{JobID: r.JobID, QueryCondition: r.QueryCondition, Type: r.Type, Status: hubapi.JobQueued}
	for _, resp := range resps {
		if resp != nil {
			out.Status = resp.Status
		}
	}
	return out, nil
}

// GetJob reads the job's part on every hub of the view and sums them: statistics added, the status
// running while any part is not ended, else failed or cancelled if any part ended so, else completed.
// A hub that answers NotFound has no part; NotFound when no hub has one.
func (s *Set) GetJob(ctx context.Context, id string) (*hubapi.JobResponse, error) {
	parts := make([]*hubapi.JobResponse, len(s.names))
	err := s.each(s.names, func(name string, h engine.Hub) error {
		resp, err := h.GetJob(ctx, id)
		if hubapi.IsNotFound(err) {
			return nil
		}
		parts[slices.Index(s.names, name)] = resp
		return err
	})
	if err != nil {
		return nil, err
	}
	return merge(id, parts)
}

// merge sums the parts of a job (nil: no part on that hub).
func merge(id string, parts []*hubapi.JobResponse) (*hubapi.JobResponse, error) {
	var out *hubapi.JobResponse
	stats := hubapi.DeviceJobStatistics{}
	terminal, failed, cancelled := true, false, false
	for _, p := range parts {
		if p == nil {
			continue
		}
		if out == nil {
			c := *p
			out = &c
		}
		if d := p.DeviceJobStatistics; d != nil {
			stats.DeviceCount += d.DeviceCount
			stats.FailedCount += d.FailedCount
			stats.SucceededCount += d.SucceededCount
			stats.RunningCount += d.RunningCount
			stats.PendingCount += d.PendingCount
		}
		if !p.Terminal() {
			terminal = false
			out.Status = p.Status
		}
		failed = failed || p.Status == hubapi.JobFailed
		cancelled = cancelled || p.Status == hubapi.JobCancelled
		if p.EndTime != nil && (out.EndTime == nil || p.EndTime.After(out.EndTime.Time)) {
			out.EndTime = p.EndTime
		}
		if p.FailureReason != "" {
			out.FailureReason = p.FailureReason
		}
	}
	if out == nil {
		return nil, &hubapi.Error{StatusCode: http.StatusNotFound, Op: "GET /jobs/v2/" + id, Message: "job " + id + " is on none of the hubs"}
	}
	if terminal {
		switch {
		case failed:
			out.Status = hubapi.JobFailed
		case cancelled:
			out.Status = hubapi.JobCancelled
		default:
			out.Status = hubapi.JobCompleted
		}
	}
	out.DeviceJobStatistics = &stats
	return out, nil
}

// Quotas combines the quotas of a Set's hubs into what the engine sizes its work to (see the package
// documentation): the smallest of the per-job and per-query limits, the sum of the per-device rates.
func Quotas(qs []hubapi.Quotas) hubapi.Quotas {
	if len(qs) == 0 {
		return hubapi.Quotas{}
	}
	out := qs[0]
	for _, q := range qs[1:] {
		if q.Tier != out.Tier {
			out.Tier = "mixed"
		}
		out.Units = min(out.Units, q.Units)
		out.ConcurrentJobs = min(out.ConcurrentJobs, q.ConcurrentJobs)
		out.JobOpsPerMinute = math.Min(out.JobOpsPerMinute, q.JobOpsPerMinute)
		out.QueriesPerMinute = math.Min(out.QueriesPerMinute, q.QueriesPerMinute)
		out.JobDeviceOpsPerSec += q.JobDeviceOpsPerSec
		out.TwinReadsPerSec += q.TwinReadsPerSec
		out.TwinUpdatesPerSec += q.TwinUpdatesPerSec
		out.MaxPageSize = min(out.MaxPageSize, q.MaxPageSize)
		out.MaxQueryLength = min(out.MaxQueryLength, q.MaxQueryLength)
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
