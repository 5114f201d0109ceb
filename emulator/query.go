package emulator

import (
	"encoding/json"
	"iter"
	"slices"
	"strings"
	"time"

	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/query"
)

// Boxed constants, so that query evaluation allocates nothing per twin for these fields.
var (
	anyEnabled      any = "enabled"
	anyDisabled     any = "disabled"
	anyConnected    any = "Connected"
	anyDisconnected any = "Disconnected"
	anySAS          any = "sas"
	anyZero         any = 0
	anyFalse        any = false
	anyTrue         any = true
	anyThumbprint   any = map[string]any{"primaryThumbprint": nil, "secondaryThumbprint": nil}
)

// twinDoc is a device seen as its twin document by the query evaluator. Nested sections are further
// pointer conversions of the same device, so reading a twin allocates nothing.
type twinDoc device

// Field implements query.Object: the twin's top-level properties, exact name first, then
// case-insensitively.
func (t *twinDoc) Field(name string) (any, bool) {
	if v, ok, known := t.field(name); known {
		return v, ok
	}
	if v, ok, known := t.field(strings.ToLower(name)); known {
		return v, ok
	}
	return nil, false
}

func (t *twinDoc) field(name string) (v any, ok, known bool) {
	d := (*device)(t)
	switch name {
	case "deviceId", "deviceid":
		return d.idAny, true, true
	case "moduleId", "moduleid":
		if d.mod == nil {
			return nil, false, true
		}
		return d.mod.idAny, true, true
	case "tags":
		if len(d.tags) == 0 {
			return nil, false, true
		}
		return d.tags, true, true
	case "properties":
		return (*propsDoc)(d), true, true
	case "status":
		if d.disabled {
			return anyDisabled, true, true
		}
		return anyEnabled, true, true
	case "connectionState", "connectionstate":
		if !d.connected() {
			return anyDisconnected, true, true
		}
		return anyConnected, true, true
	case "etag":
		return twinETag(d.version), true, true
	case "deviceEtag", "deviceetag":
		return deviceETag(d.deviceETag), true, true
	case "version":
		return d.version, true, true
	case "statusReason", "statusreason":
		if d.statusReason == "" {
			return nil, false, true
		}
		return d.statusReason, true, true
	case "statusUpdateTime", "statusupdatetime":
		return hubTime(d.statusAt), true, true
	case "lastActivityTime", "lastactivitytime":
		return hubTime(d.lastActivity), true, true
	case "cloudToDeviceMessageCount", "cloudtodevicemessagecount":
		return anyZero, true, true
	case "authenticationType", "authenticationtype":
		return anySAS, true, true
	case "x509Thumbprint", "x509thumbprint":
		return anyThumbprint, true, true
	case "capabilities":
		return (*capsDoc)(d), true, true
	case "modelId", "modelid":
		return d.modelID, true, true
	}
	return nil, false, false
}

// MarshalJSON renders the twin, for projections that select a whole twin.
func (t *twinDoc) MarshalJSON() ([]byte, error) { return appendTwin(nil, (*device)(t)), nil }

type capsDoc device

func (c *capsDoc) Field(name string) (any, bool) {
	if strings.EqualFold(name, "iotEdge") {
		if c.iotEdge {
			return anyTrue, true
		}
		return anyFalse, true
	}
	return nil, false
}

func (c *capsDoc) MarshalJSON() ([]byte, error) {
	if c.iotEdge {
		return []byte(`{"iotEdge":true}`), nil
	}
	return []byte(`{"iotEdge":false}`), nil
}

type propsDoc device

func (p *propsDoc) Field(name string) (any, bool) {
	switch {
	case name == "desired" || strings.EqualFold(name, "desired"):
		return (*desiredDoc)(p), true
	case name == "reported" || strings.EqualFold(name, "reported"):
		return (*reportedDoc)(p), true
	}
	return nil, false
}

func (p *propsDoc) MarshalJSON() ([]byte, error) {
	d := (*device)(p)
	b := []byte(`{"desired":`)
	b = d.desiredSection().append(b)
	b = append(b, `,"reported":`...)
	b = d.reportedSection().append(b)
	return append(b, '}'), nil
}

// desiredDoc and reportedDoc are a twin's properties sections seen by the query evaluator.
type (
	desiredDoc  device
	reportedDoc device
)

func (s *desiredDoc) Field(name string) (any, bool) {
	return (*device)(s).desiredSection().field(name)
}

func (s *desiredDoc) MarshalJSON() ([]byte, error) {
	return (*device)(s).desiredSection().append(nil), nil
}

func (s *reportedDoc) Field(name string) (any, bool) {
	return (*device)(s).reportedSection().field(name)
}

func (s *reportedDoc) MarshalJSON() ([]byte, error) {
	return (*device)(s).reportedSection().append(nil), nil
}

// field is a section's property of that name, exact first, then case-insensitively, with $version and
// $metadata.
func (s section) field(name string) (any, bool) {
	m := s.m
	if v, ok := m[name]; ok {
		return v, true
	}
	switch {
	case strings.EqualFold(name, "$version"):
		return s.ver, true
	case strings.EqualFold(name, "$metadata"):
		// Built on demand: queries on metadata are rare, so it is not kept per twin.
		var mm map[string]any
		_ = json.Unmarshal(s.append(nil), &mm)
		return mm["$metadata"], true
	}
	for k, v := range m {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return nil, false
}

// rowDoc is a devices.jobs row seen by the query evaluator.
type rowDoc deviceJobRow

func (r *rowDoc) Field(name string) (any, bool) {
	if v, ok, known := r.field(name); known {
		return v, ok
	}
	v, ok, _ := r.field(strings.ToLower(name))
	return v, ok
}

func (r *rowDoc) field(name string) (any, bool, bool) {
	v, ok := r.lookup(name)
	return v, ok, ok || rowFields[name]
}

// rowFields are the row's property names, in the lower case the fallback lookup uses.
var rowFields = map[string]bool{"deviceid": true, "jobid": true, "jobtype": true, "status": true,
	"starttimeutc": true, "endtimeutc": true, "createddatetimeutc": true, "lastupdateddatetimeutc": true,
	"outcome": true, "error": true}

func (r *rowDoc) lookup(name string) (any, bool) {
	row := (*deviceJobRow)(r)
	switch name {
	case "deviceId":
		name = "deviceid"
	case "jobId":
		name = "jobid"
	case "jobType":
		name = "jobtype"
	case "startTimeUtc":
		name = "starttimeutc"
	case "endTimeUtc":
		name = "endtimeutc"
	case "createdDateTimeUtc":
		name = "createddatetimeutc"
	case "lastUpdatedDateTimeUtc":
		name = "lastupdateddatetimeutc"
	}
	switch name {
	case "deviceid":
		return row.dev.idAny, true
	case "jobid":
		return row.job.idAny, true
	case "jobtype":
		return row.job.typAny, true
	case "status":
		return rowStatusAny[row.status], true
	case "starttimeutc":
		return timeField(row.start)
	case "endtimeutc":
		return timeField(row.end)
	case "createddatetimeutc":
		return timeField(row.job.began)
	case "lastupdateddatetimeutc":
		last := max(row.end, row.start, row.job.began)
		return timeField(last)
	case "outcome":
		var o map[string]any
		b, _ := json.Marshal(row.deviceJob().Outcome)
		_ = json.Unmarshal(b, &o)
		return o, true
	case "error":
		if row.errCode == "" {
			return nil, false
		}
		return map[string]any{"code": row.errCode, "description": row.errDesc}, true
	}
	return nil, false
}

func timeField(ns int64) (any, bool) {
	if ns == 0 {
		return nil, false
	}
	return hubTime(ns), true
}

// parseCondition parses a job's query condition; "*" selects every device.
func parseCondition(cond string) (query.Expr, error) {
	if strings.TrimSpace(cond) == "*" {
		return query.All{}, nil
	}
	return query.ParseCondition(cond)
}

// selectWhere returns the registered devices m matches now, in creation order.
func (s *store) selectWhere(m *query.Matcher) []*device {
	var out []*device
	_ = s.forEach(func(d *device) error {
		if m.Match((*twinDoc)(d)) {
			out = append(out, d)
		}
		return nil
	})
	return out
}

// twins iterates the twins a query sees at now, with the query lag applied; callers hold the read lock.
func (s *store) twins(now int64) iter.Seq[*device] {
	return s.asQueried(now, slices.Values(s.order), func(*device) bool { return true })
}

// asQueried yields devs as a query sees them at now (as they were before the query lag, and without
// the devices created within it), then the devices deleted within the lag that deleted accepts, as
// they were.
func (s *store) asQueried(now int64, devs iter.Seq[*device], deleted func(*device) bool) iter.Seq[*device] {
	view := s.lag.view(now)
	return func(yield func(*device) bool) {
		for d := range devs {
			if d.deleted {
				continue
			}
			if view != nil {
				if prev, changed := view[d]; changed {
					if prev == nil {
						continue // created within the lag
					}
					d = prev
				}
			}
			if !yield(d) {
				return
			}
		}
		for d, prev := range view {
			if d.deleted && prev != nil && deleted(d) {
				if !yield(prev) {
					return
				}
			}
		}
	}
}

// matchTwins returns the twins m matches, as a query sees them now, up to top of them (-1: all).
func (s *store) matchTwins(m *query.Matcher, top int) []*device {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var devs []*device
	for d := range s.twins(time.Now().UnixNano()) {
		if top >= 0 && len(devs) >= top {
			break
		}
		if m.Match((*twinDoc)(d)) {
			devs = append(devs, d)
		}
	}
	return devs
}

// copyTwins copies the twins devs under the read lock; their maps are immutable, so the copies can be
// rendered outside it.
func (s *store) copyTwins(devs []*device) []device {
	page := make([]device, len(devs))
	s.mu.RLock()
	defer s.mu.RUnlock()
	for i, d := range devs {
		page[i] = *d
	}
	return page
}

// queryRows evaluates an aggregating or projecting query over the twins it sees now and renders each
// row as JSON.
func (s *store) queryRows(q *query.Query) ([][]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	twins := s.twins(time.Now().UnixNano())
	switch ids, ok := idsOf(q.Where()); {
	case q.Collection() == query.Modules:
		twins = slices.Values(s.modOrder)
	case ok:
		twins = s.twinsOf(ids, time.Now().UnixNano())
	}
	var rows [][]byte
	if q.Aggregate() {
		seq := func(yield func(query.Object) bool) {
			for d := range twins {
				if !yield((*twinDoc)(d)) {
					return
				}
			}
		}
		for _, row := range q.Run(seq) {
			b, err := marshalRow(q, row)
			if err != nil {
				return nil, err
			}
			rows = append(rows, b)
		}
		return rows, nil
	}
	m, top := q.Matcher(), q.Top()
	for d := range twins {
		if top >= 0 && len(rows) >= top {
			break
		}
		doc := (*twinDoc)(d)
		if !m.Match(doc) {
			continue
		}
		b, err := marshalRow(q, q.Project(doc))
		if err != nil {
			return nil, err
		}
		rows = append(rows, b)
	}
	return rows, nil
}

// marshalRow renders one row of a query's result, its keys spelled as the hub spells them.
func marshalRow(q *query.Query, row map[string]any) ([]byte, error) {
	b, err := json.Marshal(canonicalKeys(q, row))
	if err != nil {
		return nil, hubErr(hubapi.CodeArgumentInvalid, "The query's result cannot be represented in JSON: %v", err)
	}
	return b, nil
}

// matchRows returns the devices.jobs rows m matches, up to top of them (-1: all).
func (js *jobStore) matchRows(m *query.Matcher, top int) []*deviceJobRow {
	js.mu.RLock()
	defer js.mu.RUnlock()
	var rows []*deviceJobRow
	for _, j := range js.order {
		for i := range j.rows {
			if top >= 0 && len(rows) >= top {
				return rows
			}
			if r := &j.rows[i]; m.Match((*rowDoc)(r)) {
				rows = append(rows, r)
			}
		}
	}
	return rows
}

// twinFieldNames are the twin's top-level property names as the hub spells them.
var twinFieldNames = func() map[string]string {
	m := map[string]string{}
	for _, n := range []string{"deviceId", "moduleId", "etag", "deviceEtag", "version", "status", "statusReason",
		"statusUpdateTime", "connectionState", "lastActivityTime", "cloudToDeviceMessageCount",
		"authenticationType", "x509Thumbprint", "capabilities", "modelId", "tags", "properties",
		"desired", "reported", "iotEdge"} {
		m[strings.ToLower(n)] = n
	}
	return m
}()

// canonicalKeys renames projected keys that name twin properties to the hub's spelling: the hub answers
// SELECT DeviceId with the key deviceId. Keys from aliases and from stored twin maps are left alone.
func canonicalKeys(q *query.Query, row map[string]any) map[string]any {
	for _, it := range q.Select() {
		if it.Alias != "" || it.Func != "" || len(it.Path.Segments) == 0 {
			continue
		}
		written := it.Path.Segments[len(it.Path.Segments)-1]
		canon, ok := twinFieldNames[strings.ToLower(written)]
		if !ok || canon == written {
			continue
		}
		if v, present := row[written]; present {
			if _, taken := row[canon]; !taken {
				delete(row, written)
				row[canon] = v
			}
		}
	}
	return row
}
