package engine

import (
	"context"

	"github.com/iot-rollout/rollout/hubapi"
)

// Hub is what the engine asks of IoT Hub; *hubapi.Client satisfies it. Every method blocks until the
// hub answered (the client retries transient errors and paces itself to the hub's quotas).
type Hub interface {
	// Query runs a device query in pages of at most pageSize items.
	Query(ctx context.Context, query string, pageSize int) *hubapi.Pager
	// GetTwin reads one twin exactly (queries lag; a twin read does not).
	GetTwin(ctx context.Context, id string) (*hubapi.Twin, error)
	// UpdateTwin patches a twin; etag "*" is unconditional.
	UpdateTwin(ctx context.Context, id string, patch *hubapi.Twin, etag string) (*hubapi.Twin, error)
	// CreateJob creates a job; a duplicate id fails with an error for which hubapi.IsAlreadyExists holds.
	CreateJob(ctx context.Context, r *hubapi.JobRequest) (*hubapi.JobResponse, error)
	// GetJob reads a job; hubapi.IsNotFound holds for an id the hub does not know.
	GetJob(ctx context.Context, id string) (*hubapi.JobResponse, error)
	// DeviceJobs pages through a job's per-device records, optionally filtered by where.
	DeviceJobs(ctx context.Context, jobID, where string, pageSize int) *hubapi.Pager
}

var _ Hub = (*hubapi.Client)(nil)

// A Hub over several hubs (package hubset) offers two more methods, which the engine uses when present:
//
//   - For(hubs) is the view of the named hubs alone; a wave of a plan with hubs resolves its devices on
//     each of its hubs through For, with that hub's condition (plan.ConditionOn).
//   - PartedJobs reports that a job is made of parts on several hubs, which a lookup by id cannot
//     prove complete; a job whose intent a crashed run recorded is then created again rather than
//     looked up (each part that exists answers AlreadyExists, so no device runs twice).
type (
	hubViews   interface{ For(hubs []string) Hub }
	partedJobs interface{ PartedJobs() bool }
)

// hubFor is the view of h over hub (h itself when it has no views or hub is "").
func hubFor(h Hub, hub string) Hub {
	if v, ok := h.(hubViews); ok && hub != "" {
		return v.For([]string{hub})
	}
	return h
}

// parted reports whether h's jobs are made of parts on several hubs.
func parted(h Hub) bool {
	p, ok := h.(partedJobs)
	return ok && p.PartedJobs()
}
