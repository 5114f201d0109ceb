package emulator

import (
	"net/http"

	"github.com/iot-rollout/rollout/hubapi"
)

// invokeHandler serves POST /twins/{id}/methods, and with key {id}/{mid} POST
// /twins/{id}/modules/{mid}/methods: a direct method call, answered when the device or module answers
// (or the client goes away).
func (s *Server) invokeHandler(w http.ResponseWriter, r *http.Request, key string) error {
	var m hubapi.CloudToDeviceMethod
	if _, err := decodeBody(r, &m); err != nil {
		return err
	}
	if err := checkMethod(&m); err != nil {
		return err
	}
	d, err := s.store.lookup(key)
	if err != nil {
		return err
	}
	res, err := s.invoke(r.Context(), d, &m)
	if err != nil {
		if r.Context().Err() != nil {
			return nil // the client went away
		}
		return err
	}
	return writeOK(w, res)
}
