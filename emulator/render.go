package emulator

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
)

// This file renders twins as JSON by appending to a byte slice: paging through a million twins renders
// every one of them, and encoding/json's reflection over maps was the bottleneck.

// appendTwin appends the twin JSON of d, as the hub returns it from GET /twins and queries.
func appendTwin(b []byte, d *device) []byte {
	b = append(b, `{"deviceId":`...)
	b = appendString(b, d.id)
	if d.mod != nil {
		b = append(b, `,"moduleId":`...)
		b = appendString(b, d.mod.id)
	}
	b = append(b, `,"etag":"`...)
	b = appendTwinETag(b, d.version)
	b = append(b, `","deviceEtag":"`...)
	b = appendDeviceETag(b, d.deviceETag)
	b = append(b, `","status":"`...)
	b = append(b, d.status()...)
	b = append(b, '"')
	if d.statusReason != "" {
		b = append(b, `,"statusReason":`...)
		b = appendString(b, d.statusReason)
	}
	b = append(b, `,"statusUpdateTime":"`...)
	b = appendHubTime(b, d.statusAt)
	b = append(b, `","connectionState":"`...)
	b = append(b, d.connectionState()...)
	b = append(b, `","lastActivityTime":"`...)
	b = appendHubTime(b, d.lastActivity)
	b = append(b, `","cloudToDeviceMessageCount":0,"authenticationType":"sas","x509Thumbprint":{"primaryThumbprint":null,"secondaryThumbprint":null},"modelId":`...)
	b = appendString(b, d.modelID)
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, d.version, 10)
	if len(d.tags) > 0 {
		b = append(b, `,"tags":`...)
		b = appendObject(b, d.tags)
	}
	b = append(b, `,"properties":{"desired":`...)
	b = d.desiredSection().append(b)
	b = append(b, `,"reported":`...)
	b = d.reportedSection().append(b)
	if d.mod != nil { // module twins have no capabilities
		return append(b, "}}"...)
	}
	b = append(b, `},"capabilities":{"iotEdge":`...)
	b = strconv.AppendBool(b, d.iotEdge)
	b = append(b, "}}"...)
	return b
}

// section is a twin's desired or reported properties with what their $metadata and $version are
// rendered from.
type section struct {
	m                map[string]any
	meta             []metaEntry
	at, created, ver int64
	withVersion      bool // $lastUpdatedVersion in $metadata: desired properties only
}

func (d *device) desiredSection() section {
	return section{d.desired, d.desiredMeta, d.desiredAt, d.created, d.desiredVer, true}
}

func (d *device) reportedSection() section {
	return section{d.reported, d.reportedMeta, d.reportedAt, d.created, d.reportedVer, false}
}

// append appends the section with its $metadata and $version.
func (s section) append(b []byte) []byte {
	return appendSection(b, s.m, s.meta, s.at, s.created, s.ver, s.withVersion)
}

// appendSection appends a desired or reported section with its $metadata and $version.
func appendSection(b []byte, m map[string]any, meta []metaEntry, at, created, ver int64, withVersion bool) []byte {
	b = append(b, '{')
	keys := sortedKeys(m)
	for _, k := range keys {
		b = appendString(b, k)
		b = append(b, ':')
		b = appendValue(b, m[k])
		b = append(b, ',')
	}
	b = append(b, `"$metadata":{"$lastUpdated":"`...)
	b = appendHubTime(b, at)
	b = append(b, '"')
	var atBuf [32]byte
	for _, k := range keys {
		t, v := created, int64(1)
		if i, ok := slices.BinarySearchFunc(meta, k, func(e metaEntry, k string) int {
			switch {
			case e.key < k:
				return -1
			case e.key > k:
				return 1
			}
			return 0
		}); ok {
			t, v = meta[i].at, meta[i].ver
		}
		b = append(b, ',')
		b = appendString(b, k)
		b = append(b, ':')
		b = appendMeta(b, m[k], appendHubTime(atBuf[:0], t), v, withVersion, 1)
	}
	b = append(b, `},"$version":`...)
	b = strconv.AppendInt(b, ver, 10)
	b = append(b, '}')
	return b
}

func appendMeta(b []byte, v any, at []byte, ver int64, withVersion bool, depth int) []byte {
	b = append(b, `{"$lastUpdated":"`...)
	b = append(b, at...)
	b = append(b, '"')
	if withVersion {
		b = append(b, `,"$lastUpdatedVersion":`...)
		b = strconv.AppendInt(b, ver, 10)
	}
	if m, ok := v.(map[string]any); ok && depth < maxDepth {
		for _, k := range sortedKeys(m) {
			b = append(b, ',')
			b = appendString(b, k)
			b = append(b, ':')
			b = appendMeta(b, m[k], at, ver, withVersion, depth+1)
		}
	}
	return append(b, '}')
}

func sortedKeys(m map[string]any) []string {
	if len(m) == 0 {
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func appendObject(b []byte, m map[string]any) []byte {
	b = append(b, '{')
	for i, k := range sortedKeys(m) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		b = appendValue(b, m[k])
	}
	return append(b, '}')
}

// appendValue appends a JSON value of encoding/json shapes; anything else goes through encoding/json.
func appendValue(b []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...)
	case string:
		return appendString(b, x)
	case bool:
		return strconv.AppendBool(b, x)
	case float64:
		return appendFloat(b, x)
	case map[string]any:
		return appendObject(b, x)
	case []any:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendValue(b, e)
		}
		return append(b, ']')
	default:
		j, err := json.Marshal(x)
		if err != nil {
			return append(b, "null"...)
		}
		return append(b, j...)
	}
}

// appendFloat formats like encoding/json: plain notation except for very small or large magnitudes.
func appendFloat(b []byte, f float64) []byte {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return append(b, "null"...)
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaping as encoding/json does (HTML characters included).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
