package emulator

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/iot-rollout/rollout/hubapi"
)

// The registry's handlers: GET /devices and GET, PUT and DELETE /devices/{id}. Each is charged to the
// registry operations quota by the router.

// listDevices serves GET /devices, with the optional top.
func (s *Server) listDevices(w http.ResponseWriter, r *http.Request) error {
	top := 1000 // the hub's default and maximum for GET /devices
	if t := r.URL.Query().Get("top"); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 1 || n > 1000 {
			return hubErr(hubapi.CodeArgumentInvalid, "top must be between 1 and 1000")
		}
		top = n
	}
	return writeOK(w, s.store.devices(top))
}

// getDevice serves GET /devices/{id}.
func (s *Server) getDevice(w http.ResponseWriter, id string) error {
	d, err := s.store.snapshot(id)
	if err != nil {
		return err
	}
	return s.writeDevice(w, &d)
}

// putDevice serves PUT /devices/{id}: it creates the device, or updates it when If-Match is given.
func (s *Server) putDevice(w http.ResponseWriter, r *http.Request, id string) error {
	var req hubapi.Device
	if _, err := decodeBody(r, &req); err != nil {
		return err
	}
	if req.DeviceID == "" {
		req.DeviceID = id
	}
	if req.DeviceID != id {
		return hubErr(hubapi.CodeArgumentInvalid, "The deviceId in the body (%s) differs from the one in the path (%s)", req.DeviceID, id)
	}
	if req.Status != "" && req.Status != "enabled" && req.Status != "disabled" {
		return hubErr(hubapi.CodeArgumentInvalid, "status must be enabled or disabled")
	}
	var d device
	var err error
	// A PUT with an If-Match (a specific etag or *) updates; without one (or with the empty "" that
	// Azure.IoT.Hub.Service sends) it creates, and 409 when the device exists, as the SDKs' create and
	// update calls expect.
	if strings.Trim(strings.TrimSpace(r.Header.Get("If-Match")), `"`) != "" {
		d, err = s.store.updateDevice(&req, r.Header.Get("If-Match"), time.Now().UnixNano())
	} else {
		d, err = s.store.createDevice(&req, time.Now().UnixNano())
	}
	if err != nil {
		return err
	}
	return s.writeDevice(w, &d)
}

// writeDevice answers with the registry view of d (a snapshot) and its etag.
func (s *Server) writeDevice(w http.ResponseWriter, d *device) error {
	dj := s.store.deviceJSON(d)
	w.Header().Set("ETag", `"`+dj.ETag+`"`)
	return writeOK(w, dj)
}

// deleteDevice serves DELETE /devices/{id}, conditional on If-Match when given.
func (s *Server) deleteDevice(w http.ResponseWriter, r *http.Request, id string) error {
	if err := s.store.remove(id, r.Header.Get("If-Match")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
