package emulator

import (
	"net/http"
	"strings"
	"time"

	"github.com/iot-rollout/rollout/hubapi"
)

// The module handlers: the registry's GET /devices/{id}/modules and GET, PUT and DELETE
// /devices/{id}/modules/{mid}, charged to registry operations; the module twin's GET, PATCH and PUT
// /twins/{id}/modules/{mid}, charged to twin reads and updates; and POST
// /twins/{id}/modules/{mid}/methods, charged to none, as device methods are.

// routeModule serves the module paths; seg[2] is "modules".
func (s *Server) routeModule(w http.ResponseWriter, r *http.Request, seg []string) error {
	id := seg[1]
	switch {
	case seg[0] == "devices" && len(seg) == 3:
		if r.Method != http.MethodGet {
			return errMethod(r)
		}
		return s.charge(QuotaRegistryOps, func() error { return s.listModules(w, id) })
	case seg[0] == "devices" && len(seg) == 4:
		switch r.Method {
		case http.MethodGet:
			return s.charge(QuotaRegistryOps, func() error { return s.getModule(w, id, seg[3]) })
		case http.MethodPut:
			return s.charge(QuotaRegistryOps, func() error { return s.putModule(w, r, id, seg[3]) })
		case http.MethodDelete:
			return s.charge(QuotaRegistryOps, func() error { return s.deleteModule(w, r, id, seg[3]) })
		}
		return errMethod(r)
	case seg[0] == "twins" && len(seg) == 4:
		key := moduleKey(id, seg[3])
		switch r.Method {
		case http.MethodGet:
			return s.charge(QuotaTwinReads, func() error { return s.getTwin(w, key) })
		case http.MethodPatch, http.MethodPut:
			return s.charge(QuotaTwinUpdates, func() error { return s.writeTwinHandler(w, r, key) })
		}
		return errMethod(r)
	case seg[0] == "twins" && len(seg) == 5 && seg[4] == "methods":
		if r.Method != http.MethodPost {
			return errMethod(r)
		}
		return s.invokeHandler(w, r, moduleKey(id, seg[3]))
	}
	return errNotFound
}

// listModules serves GET /devices/{id}/modules.
func (s *Server) listModules(w http.ResponseWriter, id string) error {
	mods, err := s.store.moduleList(id)
	if err != nil {
		return err
	}
	return writeOK(w, mods)
}

// getModule serves GET /devices/{id}/modules/{mid}.
func (s *Server) getModule(w http.ResponseWriter, id, mid string) error {
	m, err := s.store.snapshot(moduleKey(id, mid))
	if err != nil {
		return err
	}
	return s.writeModule(w, &m)
}

// putModule serves PUT /devices/{id}/modules/{mid}: it creates the module, or updates it when
// If-Match is given (as PUT /devices/{id} does).
func (s *Server) putModule(w http.ResponseWriter, r *http.Request, id, mid string) error {
	var req hubapi.Module
	if _, err := decodeBody(r, &req); err != nil {
		return err
	}
	if req.DeviceID == "" {
		req.DeviceID = id
	}
	if req.ModuleID == "" {
		req.ModuleID = mid
	}
	if req.DeviceID != id || req.ModuleID != mid {
		return hubErr(hubapi.CodeArgumentInvalid, "The deviceId and moduleId in the body (%s, %s) differ from those in the path (%s, %s)", req.DeviceID, req.ModuleID, id, mid)
	}
	var m device
	var err error
	if strings.Trim(strings.TrimSpace(r.Header.Get("If-Match")), `"`) != "" {
		m, err = s.store.updateModule(&req, r.Header.Get("If-Match"))
	} else {
		m, err = s.store.createModule(&req, time.Now().UnixNano())
	}
	if err != nil {
		return err
	}
	return s.writeModule(w, &m)
}

// writeModule answers with the registry view of module m (a snapshot) and its etag.
func (s *Server) writeModule(w http.ResponseWriter, m *device) error {
	mj := s.store.moduleJSON(m)
	w.Header().Set("ETag", `"`+mj.ETag+`"`)
	return writeOK(w, mj)
}

// deleteModule serves DELETE /devices/{id}/modules/{mid}, conditional on If-Match when given.
func (s *Server) deleteModule(w http.ResponseWriter, r *http.Request, id, mid string) error {
	if err := s.store.removeModule(id, mid, r.Header.Get("If-Match")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
