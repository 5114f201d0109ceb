// Package iotmqtt is IoT Hub's device MQTT dialect as plain functions: the CONNECT username, the topics
// a device may publish and subscribe to, and the topics the hub answers on. It knows nothing of a
// server, so the emulator's MQTT framing could change without touching what the topics mean, and every
// parser here is fuzzed.
package iotmqtt

import (
	"errors"
	"net/url"
	"strconv"
	"strings"
)

// Username is a parsed CONNECT username: {host}/{deviceId}[/{moduleId}]/?api-version=...&....
type Username struct {
	Host, DeviceID, ModuleID string
	APIVersion               string // "" when the client sent none
	ClientType               string // DeviceClientType, decoded
	ModelID                  string // model-id, decoded
}

// ParseUsername parses a CONNECT username leniently, as the hub does: the query may follow "/?" or,
// from old clients, be a last segment "api-version=..." without the "?"; any api-version is accepted.
// It fails when the host or device id is missing or a segment is not valid URL escaping.
func ParseUsername(s string) (Username, error) {
	var u Username
	path, query, hasQuery := strings.Cut(s, "?")
	path = strings.TrimSuffix(path, "/")
	segs := strings.Split(path, "/")
	if !hasQuery && len(segs) >= 3 && strings.HasPrefix(segs[len(segs)-1], "api-version=") {
		query = segs[len(segs)-1]
		segs = segs[:len(segs)-1]
	}
	if len(segs) < 2 || len(segs) > 3 || segs[0] == "" || segs[1] == "" {
		return u, errors.New("the username is not {host}/{deviceId}/?api-version=...")
	}
	u.Host = segs[0]
	var err error
	if u.DeviceID, err = url.PathUnescape(segs[1]); err != nil {
		return u, errors.New("the username's device id is not valid URL escaping")
	}
	if len(segs) == 3 {
		if segs[2] == "" {
			return u, errors.New("the username's module id is empty")
		}
		if u.ModuleID, err = url.PathUnescape(segs[2]); err != nil {
			return u, errors.New("the username's module id is not valid URL escaping")
		}
	}
	q, err := parseBag(query)
	if err != nil {
		return u, errors.New("the username's query is not valid URL escaping")
	}
	u.APIVersion, u.ClientType, u.ModelID = q.Get("api-version"), q.Get("DeviceClientType"), q.Get("model-id")
	return u, nil
}

// Kind is what a topic a device publishes to asks of the hub.
type Kind int

const (
	Unknown        Kind = iota // not a topic a device may publish to: the hub closes the connection
	Telemetry                  // devices/{id}/messages/events/[{property bag}]
	TwinGet                    // $iothub/twin/GET/?$rid={rid}
	TwinReported               // $iothub/twin/PATCH/properties/reported/?$rid={rid}
	MethodResponse             // $iothub/methods/res/{status}/?$rid={rid}
)

// Publish is a parsed topic a device published to.
type Publish struct {
	Kind       Kind
	RID        string     // the request id, verbatim (twin requests and method answers)
	Status     int        // method answers
	Properties url.Values // telemetry's property bag; nil when empty
}

const (
	twinGetPrefix  = "$iothub/twin/GET/"
	twinRepPrefix  = "$iothub/twin/PATCH/properties/reported/"
	methodResPrefx = "$iothub/methods/res/"
)

// ParsePublish classifies a topic that the device deviceID (and module moduleID, "" for a device)
// published to. Telemetry must name the connected identity; a request must carry a $rid.
func ParsePublish(topic, deviceID, moduleID string) Publish {
	switch {
	case strings.HasPrefix(topic, twinGetPrefix):
		if rid, ok := ridQuery(topic[len(twinGetPrefix):]); ok {
			return Publish{Kind: TwinGet, RID: rid}
		}
	case strings.HasPrefix(topic, twinRepPrefix):
		if rid, ok := ridQuery(topic[len(twinRepPrefix):]); ok {
			return Publish{Kind: TwinReported, RID: rid}
		}
	case strings.HasPrefix(topic, methodResPrefx):
		status, rest, ok := strings.Cut(topic[len(methodResPrefx):], "/")
		if !ok {
			break
		}
		n, err := strconv.Atoi(status)
		if err != nil || n < 0 || n > 999_999 || status[0] == '+' || status[0] == '-' {
			break
		}
		if rid, ok := ridQuery(rest); ok {
			return Publish{Kind: MethodResponse, RID: rid, Status: n}
		}
	default:
		prefix := identityPrefix(deviceID, moduleID) + "messages/events/"
		if !strings.HasPrefix(topic, prefix) {
			break
		}
		bag := topic[len(prefix):]
		if bag == "" {
			return Publish{Kind: Telemetry}
		}
		props, err := parseBag(bag)
		if err != nil {
			break
		}
		return Publish{Kind: Telemetry, Properties: props}
	}
	return Publish{Kind: Unknown}
}

// parseBag reads a query or property bag: k=v pairs joined by '&', each URL-escaped. Unlike
// url.ParseQuery it takes ';' as a plain character, since model ids (dtmi:x;1) hold one.
func parseBag(s string) (url.Values, error) {
	out := url.Values{}
	for _, kv := range strings.Split(s, "&") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		k, err := url.QueryUnescape(k)
		if err != nil {
			return nil, err
		}
		if v, err = url.QueryUnescape(v); err != nil {
			return nil, err
		}
		out.Add(k, v)
	}
	return out, nil
}

// identityPrefix is the topic prefix of a device's (or module's) own topics.
func identityPrefix(deviceID, moduleID string) string {
	p := "devices/" + deviceID + "/"
	if moduleID != "" {
		p += "modules/" + moduleID + "/"
	}
	return p
}

// ridQuery reads "?$rid=X[&...]" (the rest of a topic after its last "/") and returns X as sent, since
// a client matches the answer by comparing its own string: X must be non-empty.
func ridQuery(s string) (string, bool) {
	if !strings.HasPrefix(s, "?") || strings.Contains(s, "/") {
		return "", false
	}
	for _, kv := range strings.Split(s[1:], "&") {
		if rid, ok := strings.CutPrefix(kv, "$rid="); ok && rid != "" {
			return rid, true
		}
	}
	return "", false
}

// Subscription is a topic filter the hub lets a device subscribe to.
type Subscription int

const (
	SubNone    Subscription = iota // not allowed: the hub closes the connection
	SubTwinRes                     // $iothub/twin/res/#
	SubDesired                     // $iothub/twin/PATCH/properties/desired/#
	SubMethods                     // $iothub/methods/POST/#
	SubC2D                         // devices/{id}/messages/devicebound/#
)

// MaxSubscriptions is how many topic filters a device may hold at once.
const MaxSubscriptions = 5

// ParseFilter says which of the hub's documented filters f is, for the identity connected.
func ParseFilter(f, deviceID, moduleID string) Subscription {
	switch f {
	case "$iothub/twin/res/#":
		return SubTwinRes
	case "$iothub/twin/PATCH/properties/desired/#":
		return SubDesired
	case "$iothub/methods/POST/#":
		return SubMethods
	}
	if moduleID == "" && f == identityPrefix(deviceID, "")+"messages/devicebound/#" {
		return SubC2D
	}
	return SubNone
}

// TwinResponse is the topic of the hub's answer to a twin request, rid echoed as the client sent it: $iothub/twin/res/{status}/?$rid={rid},
// with &$version={version} when version > 0 (a reported patch's answer).
func TwinResponse(status int, rid string, version int64) string {
	t := "$iothub/twin/res/" + strconv.Itoa(status) + "/?$rid=" + rid
	if version > 0 {
		t += "&$version=" + strconv.FormatInt(version, 10)
	}
	return t
}

// DesiredPatch is the topic of a desired-property push: $iothub/twin/PATCH/properties/desired/?$version=N.
func DesiredPatch(version int64) string {
	return "$iothub/twin/PATCH/properties/desired/?$version=" + strconv.FormatInt(version, 10)
}

// MethodRequest is the topic of a direct method call: $iothub/methods/POST/{name}/?$rid={rid}.
func MethodRequest(name, rid string) string {
	return "$iothub/methods/POST/" + name + "/?$rid=" + rid
}
