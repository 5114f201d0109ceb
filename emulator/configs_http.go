package emulator

import (
	"net/http"
	"strconv"
	"time"

	"github.com/iot-rollout/rollout/hubapi"
)

// The configuration handlers: GET /configurations (with top) and GET, PUT and DELETE
// /configurations/{id}, charged to registry operations.

// routeConfigurations serves the configuration paths; seg[0] is "configurations".
func (s *Server) routeConfigurations(w http.ResponseWriter, r *http.Request, seg []string) error {
	switch {
	case len(seg) == 1:
		if r.Method != http.MethodGet {
			return errMethod(r)
		}
		return s.charge(QuotaRegistryOps, func() error { return s.listConfigurations(w, r) })
	case len(seg) == 2:
		switch r.Method {
		case http.MethodGet:
			return s.charge(QuotaRegistryOps, func() error { return s.getConfiguration(w, seg[1]) })
		case http.MethodPut:
			return s.charge(QuotaRegistryOps, func() error { return s.putConfiguration(w, r, seg[1]) })
		case http.MethodDelete:
			return s.charge(QuotaRegistryOps, func() error { return s.deleteConfiguration(w, r, seg[1]) })
		}
		return errMethod(r)
	}
	return errNotFound
}

// listConfigurations serves GET /configurations: every configuration, or the first top in id order
// (the hub does not page them).
func (s *Server) listConfigurations(w http.ResponseWriter, r *http.Request) error {
	top := maxConfigurations
	if t := r.URL.Query().Get("top"); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 1 {
			return hubErr(hubapi.CodeArgumentInvalid, "top must be a positive number")
		}
		top = min(n, maxConfigurations)
	}
	return writeOK(w, s.store.configurationList(top))
}

// getConfiguration serves GET /configurations/{id}.
func (s *Server) getConfiguration(w http.ResponseWriter, id string) error {
	c, err := s.store.configuration(id)
	if err != nil {
		return err
	}
	return writeConfiguration(w, &c)
}

// putConfiguration serves PUT /configurations/{id}: a create without If-Match, an update with one.
func (s *Server) putConfiguration(w http.ResponseWriter, r *http.Request, id string) error {
	var req hubapi.Configuration
	if _, err := decodeBody(r, &req); err != nil {
		return err
	}
	if req.ID == "" {
		req.ID = id
	}
	if req.ID != id {
		return hubErr(hubapi.CodeArgumentInvalid, "The id in the body (%s) differs from the one in the path (%s)", req.ID, id)
	}
	c, err := s.store.putConfiguration(&req, r.Header.Get("If-Match"), time.Now().UnixNano())
	if err != nil {
		return err
	}
	return writeConfiguration(w, &c)
}

func writeConfiguration(w http.ResponseWriter, c *hubapi.Configuration) error {
	w.Header().Set("ETag", `"`+c.ETag+`"`)
	return writeOK(w, c)
}

// deleteConfiguration serves DELETE /configurations/{id}, conditional on If-Match when given.
func (s *Server) deleteConfiguration(w http.ResponseWriter, r *http.Request, id string) error {
	if err := s.store.removeConfiguration(id, r.Header.Get("If-Match")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
