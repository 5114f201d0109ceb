package emulator

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/iot-rollout/rollout/hubapi"
)

func (s *Server) listDevices(w http.ResponseWriter, r *http.Request) error {
	if err := s.limits.allow(QuotaRegistryOps); err != nil {
		return err
	}
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

func (s *Server) getDevice(w http.ResponseWriter, id string) error {
	if err := s.limits.allow(QuotaRegistryOps); err != nil {
		return err
	}
	d, err := s.store.snapshot(id)
	if err != nil {
		return err
	}
	dj := s.store.deviceJSON(&d)
	w.Header().Set("ETag", `"`+dj.ETag+`"`)
	return writeOK(w, dj)
}

func (s *Server) putDevice(w http.ResponseWriter, r *http.Request, id string) error {
	if err := s.limits.allow(QuotaRegistryOps); err != nil {
		return err
	}
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
	dj := s.store.deviceJSON(&d)
	w.Header().Set("ETag", `"`+dj.ETag+`"`)
	return writeOK(w, dj)
}

func (s *Server) deleteDevice(w http.ResponseWriter, r *http.Request, id string) error {
	if err := s.limits.allow(QuotaRegistryOps); err != nil {
		return err
	}
	if err := s.store.remove(id, r.Header.Get("If-Match")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
