package emulator

import (
	"errors"
	"math"

	"github.com/iot-rollout/rollout/hubapi"
)

// twinWrite is a validated write to a twin: tags and desired of a PATCH (merge) or PUT (replace).
type twinWrite struct {
	tags, desired       map[string]any
	hasTags, hasDesired bool
	replace             bool
}

// writeTwin applies w to the twin of the device or module key names (see device.key), checking ifMatch
// against the twin etag.
func (s *store) writeTwin(key string, w *twinWrite, ifMatch string, now int64) (device, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.identity(key)
	if err != nil {
		return device{}, err
	}
	if etag, cond := parseIfMatch(ifMatch); cond && etag != twinETag(d.version) {
		return device{}, hubErr(hubapi.CodePreconditionFailed, "ETag mismatch for device ID '%s'", d.id)
	}
	if err := s.applyWrite(d, w, nil, nil, now); err != nil {
		return device{}, err
	}
	return *d, nil
}

// errDeviceGone is applyAll's outcome for a device deleted since the job selected it.
var errDeviceGone = errors.New("the device was deleted")

// applyAll applies w to each of devs under one hold of the write lock, putting each outcome in errs
// (errDeviceGone for a deleted device), and then calls record, still under the lock, so that no reader
// sees a twin changed while the job's row for it is still pending. Lock order: the store's before the
// job store's.
func (s *store) applyAll(devs []*device, errs []error, w *twinWrite, tagMemo, desMemo *patchMemo, now int64, record func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, d := range devs {
		if d.deleted {
			errs[k] = errDeviceGone
			continue
		}
		errs[k] = s.applyWrite(d, w, tagMemo, desMemo, now)
	}
	record()
}

// applyWrite changes one twin; memos (optional) share results between twins that share maps. Callers hold
// mu. The sizes of the results are checked, since a patch can grow a twin past its limits.
func (s *store) applyWrite(d *device, w *twinWrite, tagMemo, desMemo *patchMemo, now int64) error {
	tags, desired := d.tags, d.desired
	before := d.desired
	switch {
	case w.replace:
		if w.hasTags {
			tags = dropNulls(w.tags)
		}
		if w.hasDesired {
			desired = dropNulls(w.desired)
		}
	default:
		if w.hasTags {
			if tagMemo != nil {
				tags = tagMemo.apply(tags)
			} else {
				tags = mergePatch(tags, w.tags)
			}
		}
		if w.hasDesired {
			if desMemo != nil {
				desired = desMemo.apply(desired)
			} else {
				desired = mergePatch(desired, w.desired)
			}
		}
	}
	// Results built through a memo were checked once for the first twin; the sizes of shared maps are
	// the same for every twin that shares them.
	if tagMemo == nil && w.hasTags {
		if err := validateSection(tags, false, maxTagsBytes); err != nil {
			return hubErr(hubapi.CodeArgumentInvalid, "Twin tags are invalid: %v", err)
		}
	}
	if desMemo == nil && w.hasDesired {
		if err := validateSection(desired, false, maxPropsBytes); err != nil {
			return hubErr(hubapi.CodeArgumentInvalid, "Twin desired properties are invalid: %v", err)
		}
	}
	s.lag.record(d)
	d.twinPatches++
	changed := false
	if w.hasTags {
		d.tags = tags
		changed = true
	}
	if w.hasDesired {
		d.desired = desired
		d.desiredVer++
		d.desiredAt = now
		if w.replace {
			d.desiredMeta = touchMeta(nil, desired, now, d.desiredVer)
		} else {
			d.desiredMeta = touchMeta(d.desiredMeta, w.desired, now, d.desiredVer)
		}
		changed = true
		if s.onDesired != nil {
			s.onDesired(d)
		}
		if d.external() && s.pushDesired != nil {
			patch := w.desired
			if w.replace {
				patch = replacePatch(before, desired)
			}
			s.pushDesired(d.key(), patch, d.desiredVer)
		}
	}
	if changed {
		d.version++
	}
	return nil
}

// reportDue makes the devices of due report their desired values back, skipping deleted and offline
// devices and items whose desired version has since changed.
func (s *store) reportDue(due []convItem, memo *reportMemo, now int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, it := range due {
		if it.dev.deleted || it.dev.desiredVer != it.ver || it.dev.offline() || it.dev.external() {
			continue
		}
		s.report(it.dev, memo, now)
	}
}

// report merges the device's desired values into its reported properties, as a simulated device does
// once it has applied them; callers hold mu.
func (s *store) report(d *device, memo *reportMemo, now int64) {
	s.lag.record(d)
	d.reported = memo.apply(d.reported, d.desired)
	d.reportedVer++
	d.reportedAt = now
	d.reportedMeta = touchMeta(d.reportedMeta, d.desired, now, d.reportedVer)
	d.lastActivity = now
	d.reports++
}

// reportMemo shares merged reported maps between twins with the same reported and desired maps.
type reportMemo struct {
	cache map[[2]uintptr]reportEntry
}

type reportEntry struct{ reported, desired, out map[string]any }

func (m *reportMemo) apply(reported, desired map[string]any) map[string]any {
	if m.cache == nil {
		m.cache = map[[2]uintptr]reportEntry{}
	}
	key := [2]uintptr{mapID(reported), mapID(desired)}
	if e, ok := m.cache[key]; ok {
		return e.out
	}
	out := mergePatch(reported, desired)
	if len(m.cache) > 4096 {
		clear(m.cache)
	}
	m.cache[key] = reportEntry{reported, desired, out}
	return out
}

// patchWrite turns a twin patch (PATCH body or a job's updateTwin) into a validated write.
func patchWrite(t *hubapi.Twin) (*twinWrite, error) {
	w := &twinWrite{}
	if len(t.Tags) > 0 {
		if err := validateSection(t.Tags, true, math.MaxInt); err != nil {
			return nil, hubErr(hubapi.CodeArgumentInvalid, "Twin tags are invalid: %v", err)
		}
		w.tags, w.hasTags = t.Tags, true
	}
	if t.Properties != nil {
		if des := stripSystemKeys(t.Properties.Desired); len(des) > 0 {
			if err := validateSection(des, true, math.MaxInt); err != nil {
				return nil, hubErr(hubapi.CodeArgumentInvalid, "Twin desired properties are invalid: %v", err)
			}
			w.desired, w.hasDesired = des, true
		}
	}
	return w, nil
}

// replacePatch is the desired patch a PUT amounts to, as a connected device is sent it: the new
// properties, and null for each one the replacement removed.
func replacePatch(before, after map[string]any) map[string]any {
	out := make(map[string]any, len(after)+len(before))
	for k := range before {
		out[k] = nil
	}
	for k, v := range after {
		out[k] = v
	}
	return out
}
