package emulator

import (
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
	switch q.Collection() {
	case query.DeviceJobs:
		rows := s.jobs.matchRows(q.Matcher(), q.Top())
		return &cursor{itemType: hubapi.ItemTypeDeviceJob, n: len(rows), render: s.jobs.rowsRenderer(rows)}, nil
	}
	if q.Aggregate() || !q.SelectAll() {
		rows, err := s.store.queryRows(q)
		if err != nil {
			return nil, err
		}
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
	var devs []*device
	if q.Collection() == query.Modules {
		devs = s.store.matchModules(q.Matcher(), q.Top())
	} else {
		devs = s.store.matchTwins(q.Matcher(), q.Top())
	}
	return &cursor{itemType: hubapi.ItemTypeTwin, n: len(devs), render: func(b []byte, from, to int) []byte {
		page := s.store.copyTwins(devs[from:to])
		for i := range page {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendTwin(b, &page[i])
		}
		return b
	}}, nil
}
