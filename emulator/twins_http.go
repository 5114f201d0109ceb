package emulator

import (
	"net/http"
	"time"

	"github.com/iot-rollout/rollout/hubapi"
)

// getTwin serves GET /twins/{id} and, with key {id}/{mid}, GET /twins/{id}/modules/{mid}.
func (s *Server) getTwin(w http.ResponseWriter, key string) error {
	d, err := s.store.snapshot(key)
	if err != nil {
		return err
	}
	return writeRaw(w, appendTwin(nil, &d))
}

// writeTwinHandler serves PATCH (merge tags and desired) and PUT (replace them) of a device twin, or of
// a module twin with key {id}/{mid}.
func (s *Server) writeTwinHandler(w http.ResponseWriter, r *http.Request, key string) error {
	var t hubapi.Twin
	if _, err := decodeBody(r, &t); err != nil {
		return err
	}
	var tw *twinWrite
	if r.Method == http.MethodPut {
		tw = &twinWrite{replace: true, hasTags: true, hasDesired: true, tags: t.Tags}
		if t.Properties != nil {
			tw.desired = stripSystemKeys(t.Properties.Desired)
		}
		if err := validateSection(tw.tags, false, maxTagsBytes); err != nil {
			return hubErr(hubapi.CodeArgumentInvalid, "Twin tags are invalid: %v", err)
		}
		if err := validateSection(tw.desired, false, maxPropsBytes); err != nil {
			return hubErr(hubapi.CodeArgumentInvalid, "Twin desired properties are invalid: %v", err)
		}
	} else {
		var err error
		if tw, err = patchWrite(&t); err != nil {
			return err
		}
	}
	d, err := s.store.writeTwin(key, tw, r.Header.Get("If-Match"), time.Now().UnixNano())
	if err != nil {
		return err
	}
	return writeRaw(w, appendTwin(nil, &d))
}
