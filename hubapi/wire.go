package hubapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// This file holds the IoT Hub wire models of api-version 2021-04-12, defined once for the client, the
// emulator and the engine. Field names follow the service's swagger (definitions Twin, Device, JobRequest,
// JobResponse, DeviceJobStatistics, CloudToDeviceMethod, CloudToDeviceMethodResult) and the per-device job
// row the service returns from `devices.jobs` queries.

// APIVersion is the data-plane api-version every request carries.
const APIVersion = "2021-04-12"

// Job types accepted on /jobs/v2.
const (
	JobTypeDeviceMethod = "scheduleDeviceMethod"
	JobTypeUpdateTwin   = "scheduleUpdateTwin"
)

// Job-level statuses (JobResponse.status). Note the two l's in JobCancelled.
const (
	JobQueued    = "queued"
	JobEnqueued  = "enqueued"
	JobScheduled = "scheduled"
	JobRunning   = "running"
	JobCompleted = "completed"
	JobFailed    = "failed"
	JobCancelled = "cancelled"
	JobUnknown   = "unknown"
)

// Per-device job statuses (DeviceJob.status). Note the one l in DeviceJobCanceled.
const (
	DeviceJobPending   = "pending"
	DeviceJobScheduled = "scheduled"
	DeviceJobRunning   = "running"
	DeviceJobCompleted = "completed"
	DeviceJobFailed    = "failed"
	DeviceJobCanceled  = "canceled"
)

// Time is a timestamp as the hub writes it. It reads RFC 3339 with or without a zone (zone-less values,
// as in devices.jobs rows, are UTC) and JSON null; it writes RFC 3339 UTC with 7 fractional digits, the
// hub's own form. The zero Time marshals as null.
type Time struct{ time.Time }

// timeLayouts are tried in order when reading a Time.
var timeLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05.9999999", "2006-01-02T15:04:05", "2006-01-02"}

// hubTimeLayout is how the hub writes job-level times: 2020-01-06T21:44:00.8884134Z.
const hubTimeLayout = "2006-01-02T15:04:05.0000000Z"

// ParseTime reads a timestamp in any of the forms the hub uses.
func ParseTime(s string) (time.Time, error) {
	for _, layout := range timeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("invalid timestamp %q", s)
}

// MarshalJSON writes the hub's form, or null for the zero Time.
func (t Time) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte("null"), nil
	}
	return []byte(`"` + t.UTC().Format(hubTimeLayout) + `"`), nil
}

// UnmarshalJSON accepts null, an empty string, and every form ParseTime reads.
func (t *Time) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) {
		t.Time = time.Time{}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("timestamp: %w", err)
	}
	if s == "" {
		t.Time = time.Time{}
		return nil
	}
	v, err := ParseTime(s)
	if err != nil {
		return err
	}
	t.Time = v
	return nil
}

// NewTime wraps t; a zero t stays zero (null on the wire).
func NewTime(t time.Time) Time { return Time{t} }

// Twin is a device (or module) twin. Tags and the desired and reported property sections are JSON objects
// as decoded by encoding/json; in a patch, a nil value removes the key.
type Twin struct {
	DeviceID                  string          `json:"deviceId,omitempty"`
	ModuleID                  string          `json:"moduleId,omitempty"`
	ETag                      string          `json:"etag,omitempty"`
	DeviceETag                string          `json:"deviceEtag,omitempty"`
	Version                   int64           `json:"version,omitempty"`
	Status                    string          `json:"status,omitempty"`
	StatusReason              string          `json:"statusReason,omitempty"`
	StatusUpdateTime          *Time           `json:"statusUpdateTime,omitempty"`
	ConnectionState           string          `json:"connectionState,omitempty"`
	LastActivityTime          *Time           `json:"lastActivityTime,omitempty"`
	CloudToDeviceMessageCount int32           `json:"cloudToDeviceMessageCount,omitempty"`
	AuthenticationType        string          `json:"authenticationType,omitempty"`
	X509Thumbprint            *X509Thumbprint `json:"x509Thumbprint,omitempty"`
	Capabilities              *Capabilities   `json:"capabilities,omitempty"`
	DeviceScope               string          `json:"deviceScope,omitempty"`
	ParentScopes              []string        `json:"parentScopes,omitempty"`
	ModelID                   string          `json:"modelId,omitempty"`
	Tags                      map[string]any  `json:"tags,omitempty"`
	Properties                *TwinProperties `json:"properties,omitempty"`
}

// TwinProperties holds a twin's desired and reported sections, each with its $metadata and $version.
type TwinProperties struct {
	Desired  map[string]any `json:"desired,omitempty"`
	Reported map[string]any `json:"reported,omitempty"`
}

// X509Thumbprint names a device's client certificates.
type X509Thumbprint struct {
	PrimaryThumbprint   *string `json:"primaryThumbprint"`
	SecondaryThumbprint *string `json:"secondaryThumbprint"`
}

// Capabilities are a device's capabilities.
type Capabilities struct {
	IoTEdge bool `json:"iotEdge"`
}

// Device is a device identity in the identity registry.
type Device struct {
	DeviceID                   string                   `json:"deviceId"`
	GenerationID               string                   `json:"generationId,omitempty"`
	ETag                       string                   `json:"etag,omitempty"`
	ConnectionState            string                   `json:"connectionState,omitempty"`
	Status                     string                   `json:"status,omitempty"`
	StatusReason               string                   `json:"statusReason,omitempty"`
	ConnectionStateUpdatedTime *Time                    `json:"connectionStateUpdatedTime,omitempty"`
	StatusUpdatedTime          *Time                    `json:"statusUpdatedTime,omitempty"`
	LastActivityTime           *Time                    `json:"lastActivityTime,omitempty"`
	CloudToDeviceMessageCount  int32                    `json:"cloudToDeviceMessageCount,omitempty"`
	Authentication             *AuthenticationMechanism `json:"authentication,omitempty"`
	Capabilities               *Capabilities            `json:"capabilities,omitempty"`
	DeviceScope                string                   `json:"deviceScope,omitempty"`
	ParentScopes               []string                 `json:"parentScopes,omitempty"`
}

// Module is a module identity of a device in the identity registry (swagger definition Module).
type Module struct {
	ModuleID                   string                   `json:"moduleId"`
	ManagedBy                  string                   `json:"managedBy,omitempty"`
	DeviceID                   string                   `json:"deviceId"`
	GenerationID               string                   `json:"generationId,omitempty"`
	ETag                       string                   `json:"etag,omitempty"`
	ConnectionState            string                   `json:"connectionState,omitempty"`
	ConnectionStateUpdatedTime *Time                    `json:"connectionStateUpdatedTime,omitempty"`
	LastActivityTime           *Time                    `json:"lastActivityTime,omitempty"`
	CloudToDeviceMessageCount  int32                    `json:"cloudToDeviceMessageCount,omitempty"`
	Authentication             *AuthenticationMechanism `json:"authentication,omitempty"`
}

// AuthenticationMechanism says how a device authenticates.
type AuthenticationMechanism struct {
	SymmetricKey   *SymmetricKey   `json:"symmetricKey,omitempty"`
	X509Thumbprint *X509Thumbprint `json:"x509Thumbprint,omitempty"`
	Type           string          `json:"type,omitempty"`
}

// SymmetricKey holds a device's base64 keys.
type SymmetricKey struct {
	PrimaryKey   string `json:"primaryKey"`
	SecondaryKey string `json:"secondaryKey"`
}

// CloudToDeviceMethod is a direct-method call, alone or inside a job. Payload is raw JSON; nil is sent as
// JSON null. Timeouts are in seconds: response 5–300 (default 30), connect 0–300 (default 0).
type CloudToDeviceMethod struct {
	MethodName               string          `json:"methodName"`
	Payload                  json.RawMessage `json:"payload"`
	ResponseTimeoutInSeconds int32           `json:"responseTimeoutInSeconds,omitempty"`
	ConnectTimeoutInSeconds  int32           `json:"connectTimeoutInSeconds"`
}

// MethodResult is a device's answer to a direct method: its own status code and payload. The HTTP status
// of the invoke is 200 even when Status is not 2xx.
type MethodResult struct {
	Status  int32           `json:"status"`
	Payload json.RawMessage `json:"payload"`
}

// JobRequest creates a v2 job (PUT /jobs/v2/{id}). For scheduleUpdateTwin, UpdateTwin.ETag must be "*".
type JobRequest struct {
	JobID                     string               `json:"jobId"`
	Type                      string               `json:"type"`
	CloudToDeviceMethod       *CloudToDeviceMethod `json:"cloudToDeviceMethod,omitempty"`
	UpdateTwin                *Twin                `json:"updateTwin,omitempty"`
	QueryCondition            string               `json:"queryCondition"`
	StartTime                 *Time                `json:"startTime"`
	MaxExecutionTimeInSeconds int64                `json:"maxExecutionTimeInSeconds,omitempty"`
}

// JobResponse is a v2 job as the hub reports it.
type JobResponse struct {
	JobID                     string               `json:"jobId"`
	QueryCondition            string               `json:"queryCondition,omitempty"`
	CreatedTime               *Time                `json:"createdTime,omitempty"`
	StartTime                 *Time                `json:"startTime,omitempty"`
	EndTime                   *Time                `json:"endTime,omitempty"`
	MaxExecutionTimeInSeconds int64                `json:"maxExecutionTimeInSeconds,omitempty"`
	Type                      string               `json:"type"`
	CloudToDeviceMethod       *CloudToDeviceMethod `json:"cloudToDeviceMethod,omitempty"`
	UpdateTwin                *Twin                `json:"updateTwin,omitempty"`
	Status                    string               `json:"status"`
	FailureReason             string               `json:"failureReason,omitempty"`
	StatusMessage             string               `json:"statusMessage,omitempty"`
	DeviceJobStatistics       *DeviceJobStatistics `json:"deviceJobStatistics,omitempty"`
}

// Terminal reports whether the job has ended (completed, failed or cancelled).
func (j *JobResponse) Terminal() bool {
	switch j.Status {
	case JobCompleted, JobFailed, JobCancelled:
		return true
	}
	return false
}

// DeviceJobStatistics counts a job's devices by state.
type DeviceJobStatistics struct {
	DeviceCount    int32 `json:"deviceCount"`
	FailedCount    int32 `json:"failedCount"`
	SucceededCount int32 `json:"succeededCount"`
	RunningCount   int32 `json:"runningCount"`
	PendingCount   int32 `json:"pendingCount"`
}

// DeviceJob is one device's record in a job, as returned by `SELECT * FROM devices.jobs`.
type DeviceJob struct {
	DeviceID               string            `json:"deviceId"`
	ModuleID               string            `json:"moduleId,omitempty"`
	JobID                  string            `json:"jobId"`
	JobType                string            `json:"jobType"`
	Status                 string            `json:"status"`
	StartTimeUTC           *Time             `json:"startTimeUtc,omitempty"`
	EndTimeUTC             *Time             `json:"endTimeUtc,omitempty"`
	CreatedDateTimeUTC     *Time             `json:"createdDateTimeUtc,omitempty"`
	LastUpdatedDateTimeUTC *Time             `json:"lastUpdatedDateTimeUtc,omitempty"`
	Outcome                *DeviceJobOutcome `json:"outcome,omitempty"`
	Error                  *DeviceJobError   `json:"error,omitempty"`
}

// DeviceJobOutcome carries a method job's per-device answer; DeviceMethodResponse is nil for twin jobs.
type DeviceJobOutcome struct {
	DeviceMethodResponse *MethodResult `json:"deviceMethodResponse"`
}

// DeviceJobError says why a device's part of a job failed, e.g. Code "DeviceNotOnline".
type DeviceJobError struct {
	Code        string `json:"code"`
	Description string `json:"description"`
}

// QuerySpecification is the body of POST /devices/query.
type QuerySpecification struct {
	Query string `json:"query"`
}

// Query response item types (the x-ms-item-type header).
const (
	ItemTypeTwin        = "Twin"
	ItemTypeDeviceJob   = "DeviceJob"
	ItemTypeJobResponse = "JobResponse"
	ItemTypeRaw         = "Raw"
)

// Paging headers of queries and job listings.
const (
	HeaderMaxItemCount = "x-ms-max-item-count"
	HeaderContinuation = "x-ms-continuation"
	HeaderItemType     = "x-ms-item-type"
	HeaderErrorCode    = "iothub-errorcode"
)

// Headers the emulator adds to every response to state the tier it emulates, so that a client paces
// itself to it without being told. A real IoT Hub sends neither.
const (
	HeaderEmulatorTier  = "X-Emulator-Tier"  // "F1", "S1", "S2", "S3" or "unlimited"
	HeaderEmulatorUnits = "X-Emulator-Units" // purchased units, a positive decimal integer (1 for unlimited)
)

// Configuration is an automatic device (or module) configuration (swagger definition Configuration):
// content written to the twins TargetCondition selects, the highest Priority winning.
type Configuration struct {
	ID                 string                `json:"id"`
	SchemaVersion      string                `json:"schemaVersion,omitempty"`
	Labels             map[string]string     `json:"labels,omitempty"`
	Content            *ConfigurationContent `json:"content,omitempty"`
	TargetCondition    string                `json:"targetCondition,omitempty"`
	CreatedTimeUTC     *Time                 `json:"createdTimeUtc,omitempty"`
	LastUpdatedTimeUTC *Time                 `json:"lastUpdatedTimeUtc,omitempty"`
	Priority           int32                 `json:"priority"`
	SystemMetrics      *ConfigurationMetrics `json:"systemMetrics,omitempty"`
	Metrics            *ConfigurationMetrics `json:"metrics,omitempty"`
	ETag               string                `json:"etag,omitempty"`
}

// ConfigurationContent is what a configuration writes. DeviceContent maps twin paths
// ("properties.desired.firmware") to values; ModulesContent maps module names to their content (IoT
// Edge deployments); ModuleContent is a module configuration's content.
type ConfigurationContent struct {
	DeviceContent  map[string]any            `json:"deviceContent,omitempty"`
	ModulesContent map[string]map[string]any `json:"modulesContent,omitempty"`
	ModuleContent  map[string]any            `json:"moduleContent,omitempty"`
}

// ConfigurationMetrics are a configuration's metric queries by name and their latest counts.
type ConfigurationMetrics struct {
	Results map[string]int64  `json:"results,omitempty"`
	Queries map[string]string `json:"queries,omitempty"`
}

// RegistryStatistics is the answer of GET /statistics/devices (swagger definition RegistryStatistics).
type RegistryStatistics struct {
	TotalDeviceCount    int64 `json:"totalDeviceCount"`
	EnabledDeviceCount  int64 `json:"enabledDeviceCount"`
	DisabledDeviceCount int64 `json:"disabledDeviceCount"`
}

// ServiceStatistics is the answer of GET /statistics/service (swagger definition ServiceStatistics).
type ServiceStatistics struct {
	ConnectedDeviceCount int64 `json:"connectedDeviceCount"`
}
