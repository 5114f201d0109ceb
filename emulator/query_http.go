package emulator

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/query"
)

// handleQuery serves POST /devices/query: twins, devices.jobs rows, projections and aggregates, paged
// through stored cursors.
func (s *Server) handleQuery(w http.ResponseWriter, r *http.Request) error {
	return s.servePaged(w, r, QuotaQueries, func() (*cursor, error) {
		var spec hubapi.QuerySpecification
		if _, err := decodeBody(r, &spec); err != nil {
			return nil, err
		}
		if strings.TrimSpace(spec.Query) == "" {
			return nil, hubErr(hubapi.CodeArgumentNull, "The query is empty")
		}
		if len(spec.Query) > s.quotas.MaxQueryLength {
			return nil, hubErr(hubapi.CodeArgumentInvalid, "The query is %d characters long; the limit is %d", len(spec.Query), s.quotas.MaxQueryLength)
		}
		q, err := query.Parse(spec.Query)
		if err != nil {
			return nil, hubErr(hubapi.CodeArgumentInvalid, "The query is invalid. Please check the format of the query and try again. %v", err)
		}
		return s.runQuery(q)
	})
}

// runQuery evaluates a query once and returns its stored result.
func (s *Server) runQuery(q *query.Query) (*cursor, error) {
	top := q.Top()
	switch q.Collection() {
	case query.DeviceJobs:
		return s.runJobsQuery(q)
	case query.Modules:
		// The emulator has no modules: every module query is empty.
		return &cursor{itemType: hubapi.ItemTypeTwin, render: func(b []byte, _, _ int) []byte { return b }}, nil
	}
	if q.Aggregate() || !q.SelectAll() {
		var rows [][]byte
		s.store.mu.RLock()
		if q.Aggregate() {
			seq := func(yield func(query.Object) bool) {
				for d := range s.twins() {
					if !yield((*twinDoc)(d)) {
						return
					}
				}
			}
			for _, row := range q.Run(seq) {
				b, err := json.Marshal(canonicalKeys(q, row))
				if err != nil {
					s.store.mu.RUnlock()
					return nil, hubErr(hubapi.CodeArgumentInvalid, "The query's result cannot be represented in JSON: %v", err)
				}
				rows = append(rows, b)
			}
		} else {
			m := q.Matcher()
			for d := range s.twins() {
				if top >= 0 && len(rows) >= top {
					break
				}
				doc := (*twinDoc)(d)
				if !m.Match(doc) {
					continue
				}
				b, err := json.Marshal(canonicalKeys(q, q.Project(doc)))
				if err != nil {
					s.store.mu.RUnlock()
					return nil, hubErr(hubapi.CodeArgumentInvalid, "The query's result cannot be represented in JSON: %v", err)
				}
				rows = append(rows, b)
			}
		}
		s.store.mu.RUnlock()
		return &cursor{itemType: hubapi.ItemTypeRaw, n: len(rows), render: func(b []byte, from, to int) []byte {
			for i := from; i < to; i++ {
				if i > from {
					b = append(b, ',')
				}
				b = append(b, rows[i]...)
			}
			return b
		}}, nil
	}
	m := q.Matcher()
	var devs []*device
	s.store.mu.RLock()
	for d := range s.twins() {
		if top >= 0 && len(devs) >= top {
			break
		}
		if m.Match((*twinDoc)(d)) {
			devs = append(devs, d)
		}
	}
	s.store.mu.RUnlock()
	return &cursor{itemType: hubapi.ItemTypeTwin, n: len(devs), render: func(b []byte, from, to int) []byte {
		// Copy the page's twins under the lock (maps are immutable), render outside it.
		page := make([]device, to-from)
		s.store.mu.RLock()
		for i := range page {
			page[i] = *devs[from+i]
		}
		s.store.mu.RUnlock()
		for i := range page {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendTwin(b, &page[i])
		}
		return b
	}}, nil
}

func (s *Server) runJobsQuery(q *query.Query) (*cursor, error) {
	m, top := q.Matcher(), q.Top()
	var rows []*deviceJobRow
	s.jobs.mu.RLock()
outer:
	for _, j := range s.jobs.order {
		for i := range j.rows {
			if top >= 0 && len(rows) >= top {
				break outer
			}
			if r := &j.rows[i]; m.Match((*rowDoc)(r)) {
				rows = append(rows, r)
			}
		}
	}
	s.jobs.mu.RUnlock()
	return &cursor{itemType: hubapi.ItemTypeDeviceJob, n: len(rows), render: renderLive(&s.jobs.mu, rows, (*deviceJobRow).deviceJob)}, nil
}

// twinFieldNames are the twin's top-level property names as the hub spells them.
var twinFieldNames = func() map[string]string {
	m := map[string]string{}
	for _, n := range []string{"deviceId", "etag", "deviceEtag", "version", "status", "statusReason",
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
