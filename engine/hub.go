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
