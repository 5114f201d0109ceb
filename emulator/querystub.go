package emulator

import (
	"net/http"
	"strings"

	"github.com/iot-rollout/rollout/hubapi"
)

// selectDevices returns the devices a job condition selects. TEMPORARY until the query evaluator lands.
func (s *Server) selectDevices(cond string) ([]*device, error) {
	if strings.TrimSpace(cond) != "*" {
		return nil, hubErr(hubapi.CodeArgumentInvalid, "query evaluation is not available yet")
	}
	s.store.mu.RLock()
	defer s.store.mu.RUnlock()
	out := make([]*device, 0, len(s.store.byID))
	for _, d := range s.store.order {
		if !d.deleted {
			out = append(out, d)
		}
	}
	return out, nil
}

func (s *Server) handleQuery(w http.ResponseWriter, r *http.Request) error {
	return hubErr(hubapi.CodeArgumentInvalid, "query evaluation is not available yet")
}
