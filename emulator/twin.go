package emulator

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Twin limits (reference: iothub-query-and-jobs.md §3.3). Sizes count key bytes plus value sizes,
// read-only $ elements excluded.
const (
	maxTagsBytes   = 8 * 1024
	maxPropsBytes  = 32 * 1024
	maxValueBytes  = 4 * 1024
	maxKeyBytes    = 1024
	maxDepth       = 10
	maxSafeInteger = 4503599627370495
	minSafeInteger = -4503599627370496
)

// validateSection checks a tags or properties object, or a patch of one (patch: null values allowed, as
// deletions). Keys beginning with '$' at the top level ($metadata, $version, which clients echo back from
// a twin they read) are skipped by the callers before this runs.
func validateSection(m map[string]any, patch bool, limit int) error {
	size, err := validateObject(m, patch, 1)
	if err != nil {
		return err
	}
	if size > limit {
		return fmt.Errorf("size %d bytes exceeds the limit of %d bytes", size, limit)
	}
	return nil
}

func validateObject(m map[string]any, patch bool, depth int) (int, error) {
	if depth > maxDepth {
		return 0, fmt.Errorf("nesting is deeper than %d levels", maxDepth)
	}
	size := 0
	for k, v := range m {
		if err := validKey(k); err != nil {
			return 0, err
		}
		n, err := validateValue(k, v, patch, depth)
		if err != nil {
			return 0, err
		}
		size += len(k) + n
	}
	return size, nil
}

func validateValue(k string, v any, patch bool, depth int) (int, error) {
	switch x := v.(type) {
	case nil:
		return 0, nil
	case bool:
		return 4, nil
	case float64:
		if x == math.Trunc(x) && (x > maxSafeInteger || x < minSafeInteger) {
			return 0, fmt.Errorf("property %q: integer %v is outside -4503599627370496..4503599627370495", k, x)
		}
		return 8, nil
	case string:
		if len(x) > maxValueBytes {
			return 0, fmt.Errorf("property %q: value is longer than %d bytes", k, maxValueBytes)
		}
		return len(x), nil
	case map[string]any:
		n, err := validateObject(x, patch, depth+1)
		if err != nil {
			return 0, err
		}
		return n, nil
	case []any:
		// Arrays: accepted (current hubs store them; the reference marks this unconfirmed), elements
		// checked like values.
		size := 0
		for _, e := range x {
			if e == nil {
				continue
			}
			n, err := validateValue(k, e, false, depth+1)
			if err != nil {
				return 0, err
			}
			size += n
		}
		if size > maxValueBytes {
			return 0, fmt.Errorf("property %q: value is larger than %d bytes", k, maxValueBytes)
		}
		return size, nil
	default:
		return 0, fmt.Errorf("property %q: unsupported value of type %T", k, v)
	}
}

// validKey enforces the twin key rules: UTF-8, at most 1 KB, no control characters, '.', '$' or space.
func validKey(k string) error {
	if k == "" {
		return fmt.Errorf("empty property name")
	}
	if len(k) > maxKeyBytes {
		return fmt.Errorf("property name %.40q... is longer than %d bytes", k, maxKeyBytes)
	}
	if !utf8.ValidString(k) {
		return fmt.Errorf("property name %q is not valid UTF-8", k)
	}
	for _, r := range k {
		if r < 0x20 || (r >= 0x7f && r <= 0x9f) || r == '.' || r == '$' || r == ' ' {
			return fmt.Errorf("property name %q contains %q, which twin property names cannot hold", k, r)
		}
	}
	return nil
}

// validDeviceID enforces the device id rules: 1-128 ASCII characters from the allowed set.
func validDeviceID(id string) error { return validID("device id", id) }

// validModuleID enforces the module id rules, which are the device id rules.
func validModuleID(id string) error { return validID("module id", id) }

// validID checks an identity's id (what names it in messages): 1-128 ASCII characters from the
// allowed set, which has no '/'.
func validID(what, id string) error {
	if id == "" {
		return fmt.Errorf("%s is empty", what)
	}
	if len(id) > 128 {
		return fmt.Errorf("%s %.20q... is longer than 128 characters", what, id)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-:.+%_#*?!(),=@;$'", c) >= 0 {
			continue
		}
		return fmt.Errorf("%s %q contains %q, which %ss cannot hold", what, id, c, what)
	}
	return nil
}

// stripSystemKeys returns m without its top-level $ keys ($metadata, $version), which clients echo back
// from twins they read and which the hub ignores on write. m is not modified.
func stripSystemKeys(m map[string]any) map[string]any {
	has := false
	for k := range m {
		if strings.HasPrefix(k, "$") {
			has = true
			break
		}
	}
	if !has {
		return m
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		if !strings.HasPrefix(k, "$") {
			out[k] = v
		}
	}
	return out
}

// mergePatch applies a JSON merge patch to src and returns the result; src is never modified (twin maps
// are immutable once stored, so snapshots and concurrent readers share them safely). Unchanged subtrees are
// shared between src and the result. A nil result means an empty object.
func mergePatch(src, patch map[string]any) map[string]any {
	if len(patch) == 0 {
		return src
	}
	out := make(map[string]any, len(src)+len(patch))
	for k, v := range src {
		out[k] = v
	}
	for k, pv := range patch {
		switch p := pv.(type) {
		case nil:
			delete(out, k)
		case map[string]any:
			old, _ := out[k].(map[string]any)
			merged := mergePatch(old, p)
			if merged == nil {
				merged = map[string]any{}
			}
			out[k] = merged
		default:
			out[k] = pv
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// dropNulls returns m without null values at any depth (a PUT stores no nulls).
func dropNulls(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		switch x := v.(type) {
		case nil:
		case map[string]any:
			out[k] = dropNulls(x)
			if out[k].(map[string]any) == nil {
				out[k] = map[string]any{}
			}
		default:
			out[k] = v
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// mapID is the identity of a map, for memoizing patches over maps shared by many twins.
func mapID(m map[string]any) uintptr {
	if m == nil {
		return 0
	}
	return uintptr(reflect.ValueOf(m).UnsafePointer())
}

// patchMemo caches mergePatch results per source map so that a job applying one patch to a million
// twins that share their generated tag map produces one new map, not a million. It holds references to
// its keys' maps, so an address is never reused while it is cached.
type patchMemo struct {
	patch map[string]any
	cache map[uintptr]memoEntry
}

type memoEntry struct {
	src, out map[string]any
}

func newPatchMemo(patch map[string]any) *patchMemo {
	return &patchMemo{patch: patch, cache: map[uintptr]memoEntry{}}
}

func (pm *patchMemo) apply(src map[string]any) map[string]any {
	id := mapID(src)
	if e, ok := pm.cache[id]; ok {
		return e.out
	}
	out := mergePatch(src, pm.patch)
	if len(pm.cache) > 4096 {
		clear(pm.cache)
	}
	pm.cache[id] = memoEntry{src, out}
	return out
}

// metaEntry records when a top-level property of desired or reported was last written, and at which
// version of its section. Nested properties share their top-level entry: the hub keeps per-leaf times,
// which nothing in rollout reads, so the emulator keeps one per top-level key to stay compact.
type metaEntry struct {
	key string
	at  int64 // unix nanoseconds
	ver int64
}

// touchMeta returns entries updated for the top-level keys of patch: deleted keys lose their entry.
func touchMeta(entries []metaEntry, patch map[string]any, at, ver int64) []metaEntry {
	out := make([]metaEntry, 0, len(entries)+len(patch))
	for _, e := range entries {
		if _, ok := patch[e.key]; !ok {
			out = append(out, e)
		}
	}
	for k, v := range patch {
		if v != nil {
			out = append(out, metaEntry{k, at, ver})
		}
	}
	slices.SortFunc(out, func(a, b metaEntry) int { return strings.Compare(a.key, b.key) })
	return out
}

// twinETag renders the twin etag the way the hub does: base64 of an 8-byte big-endian counter.
func twinETag(n int64) string { return string(appendTwinETag(nil, n)) }

// appendTwinETag appends twinETag(n) without allocating, for rendering twins by the page.
func appendTwinETag(b []byte, n int64) []byte {
	var raw [8]byte
	binary.BigEndian.PutUint64(raw[:], uint64(n))
	return base64.StdEncoding.AppendEncode(b, raw[:])
}

// deviceETag renders a device-identity etag: base64 of a decimal number.
func deviceETag(n int64) string { return string(appendDeviceETag(nil, n)) }

// appendDeviceETag appends deviceETag(n) without allocating.
func appendDeviceETag(b []byte, n int64) []byte {
	var dec [20]byte
	return base64.StdEncoding.AppendEncode(b, strconv.AppendInt(dec[:0], n, 10))
}

// parseIfMatch reads an If-Match header: "" and "*" (quoted or not) are unconditional.
func parseIfMatch(h string) (etag string, conditional bool) {
	h = strings.TrimSpace(h)
	h = strings.TrimPrefix(h, "W/")
	if len(h) >= 2 && h[0] == '"' && h[len(h)-1] == '"' {
		h = h[1 : len(h)-1]
	}
	if h == "" || h == "*" {
		return "", false
	}
	return h, true
}

// hubTime formats a time as the hub writes twin and job times: 7 fractional digits and Z.
func hubTime(ns int64) string { return string(appendHubTime(nil, ns)) }

// appendHubTime appends hubTime(ns) without allocating.
func appendHubTime(b []byte, ns int64) []byte {
	if ns == 0 {
		return append(b, "0001-01-01T00:00:00Z"...)
	}
	return time.Unix(0, ns).UTC().AppendFormat(b, "2006-01-02T15:04:05.0000000Z")
}
