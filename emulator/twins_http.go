package emulator

import (
	"net/http"
	"time"

	"github.com/iot-rollout/rollout/hubapi"
)

// getTwin serves GET /twins/{id}.
func (s *Server) getTwin(w http.ResponseWriter, id string) error {
	d, err := s.store.snapshot(id)
	if err != nil {
		return err
	}
	return writeRaw(w, appendTwin(nil, &d))
}

// writeTwinHandler serves PATCH (merge tags and desired) and PUT (replace them) of a twin.
func (s *Server) writeTwinHandler(w http.ResponseWriter, r *http.Request, id string) error {
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
	d, err := s.store.writeTwin(id, tw, r.Header.Get("If-Match"), time.Now().UnixNano())
	if err != nil {
		return err
	}
	return writeRaw(w, appendTwin(nil, &d))
}

// moduleTwin answers every module twin path: the emulator simulates devices without modules.
func (s *Server) moduleTwin(id, module string) error {
	if _, err := s.store.lookup(id); err != nil {
		return err
	}
	return hubErr(hubapi.CodeModuleNotFound, "Module %s not found on device %s", module, id)
}
