package hubapi

import (
	"fmt"
	"math"
	"strings"

	"github.com/iot-rollout/rollout/query"
)

// Quotas are the limits of a hub that a rollout meets, per the IoT Hub quotas and throttling table
// (reference: iothub-rest.md §8). Rates are per hub, already multiplied by the unit count.
type Quotas struct {
	Tier               string  // "F1", "S1", "S2", "S3" or "unlimited"
	Units              int     // purchased units (1 for unlimited)
	ConcurrentJobs     int     // jobs running at once
	JobOpsPerMinute    float64 // job create, get, cancel, list
	JobDeviceOpsPerSec float64 // twin updates or method calls made by jobs
	QueriesPerMinute   float64 // POST /devices/query, devices.jobs polling included
	TwinReadsPerSec    float64
	TwinUpdatesPerSec  float64
	MaxPageSize        int // items per query page
	MaxQueryLength     int // characters in a query or job condition
}

// Unlimited reports whether the quotas impose no rate limits (the emulator's "unlimited" tier).
func (q Quotas) Unlimited() bool { return q.Tier == "unlimited" }

// Limits that are the same on every tier.
const (
	MaxPageSize    = 100
	MaxQueryLength = query.MaxLength
)

// TierQuotas returns the quotas of tier (F1/Free, S1, S2, S3, case-insensitive, or "unlimited") with the
// given number of units (at least 1; Free has exactly 1).
func TierQuotas(tier string, units int) (Quotas, error) {
	if units < 1 {
		return Quotas{}, fmt.Errorf("units must be at least 1, got %d", units)
	}
	u := float64(units)
	q := Quotas{Units: units, MaxPageSize: MaxPageSize, MaxQueryLength: MaxQueryLength}
	switch strings.ToUpper(tier) {
	case "F1", "FREE":
		if units != 1 {
			return Quotas{}, fmt.Errorf("the Free tier has exactly 1 unit, got %d", units)
		}
		q.Tier = "F1"
		q.ConcurrentJobs, q.JobOpsPerMinute, q.JobDeviceOpsPerSec, q.QueriesPerMinute = 1, 100, 10, 20
		q.TwinReadsPerSec, q.TwinUpdatesPerSec = 100, 50
	case "S1":
		q.Tier = "S1"
		q.ConcurrentJobs, q.JobOpsPerMinute, q.JobDeviceOpsPerSec, q.QueriesPerMinute = 1, 100*u, 10, 20*u
		q.TwinReadsPerSec, q.TwinUpdatesPerSec = 100, 50
	case "S2":
		q.Tier = "S2"
		q.ConcurrentJobs, q.JobOpsPerMinute, q.JobDeviceOpsPerSec, q.QueriesPerMinute = 5, 100*u, math.Max(10, u), 20*u
		q.TwinReadsPerSec, q.TwinUpdatesPerSec = math.Max(100, 10*u), math.Max(50, 5*u)
	case "S3":
		q.Tier = "S3"
		q.ConcurrentJobs, q.JobOpsPerMinute, q.JobDeviceOpsPerSec, q.QueriesPerMinute = 10, 5000*u, 50*u, 1000*u
		q.TwinReadsPerSec, q.TwinUpdatesPerSec = 500*u, 250*u
	case "UNLIMITED":
		inf := math.Inf(1)
		q.Tier, q.Units = "unlimited", 1
		q.ConcurrentJobs, q.JobOpsPerMinute, q.JobDeviceOpsPerSec, q.QueriesPerMinute = math.MaxInt32, inf, inf, inf
		q.TwinReadsPerSec, q.TwinUpdatesPerSec = inf, inf
	default:
		return Quotas{}, fmt.Errorf("unknown tier %q (want F1, S1, S2, S3 or unlimited)", tier)
	}
	return q, nil
}
