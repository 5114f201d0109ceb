package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// The IoT Hub device topics the program uses.
const (
	topicMethods  = "$iothub/methods/POST/#"
	topicDesired  = "$iothub/twin/PATCH/properties/desired/#"
	topicTwinRes  = "$iothub/twin/res/#"
	topicReported = "$iothub/twin/PATCH/properties/reported/?$rid="
	topicMethodRe = "$iothub/methods/res/"
)

// gateway is the device's state: its profile, and the request ids of its reported patches.
type gateway struct {
	cfg *config
	out io.Writer

	mu      sync.Mutex
	profile string
	rid     int
}

func (g *gateway) logf(format string, args ...any) {
	g.mu.Lock()
	defer g.mu.Unlock()
	fmt.Fprintf(g.out, "%s: %s\n", g.cfg.deviceID, fmt.Sprintf(format, args...))
}

// connected subscribes to methods, desired changes and twin answers, and reports the profile, on
// every connection.
func (g *gateway) connected(c paho.Client) {
	for topic, h := range map[string]paho.MessageHandler{topicMethods: g.method, topicDesired: g.desired, topicTwinRes: g.twinAnswer} {
		if t := c.Subscribe(topic, 0, h); t.Wait() && t.Error() != nil {
			g.logf("subscribe %s: %v", topic, t.Error())
		}
	}
	g.mu.Lock()
	p := g.profile
	g.mu.Unlock()
	g.report(c, p)
	g.logf("connected, profile %s", p)
}

// method answers a direct method: applyProfile switches the profile, anything else is 404.
func (g *gateway) method(c paho.Client, m paho.Message) {
	name, rid, ok := methodRequest(m.Topic())
	if !ok {
		g.logf("method request on %q without a $rid", m.Topic())
		return
	}
	status, body := 404, map[string]any{"message": "unknown method " + name}
	if name == "applyProfile" {
		var req struct {
			Profile string `json:"profile"`
		}
		if err := json.Unmarshal(m.Payload(), &req); err != nil || req.Profile == "" {
			status, body = 400, map[string]any{"message": `want {"profile": "..."}`}
		} else {
			status, body = g.apply(c, req.Profile)
		}
	}
	g.logf("method %s %s -> %d", name, m.Payload(), status)
	answer, _ := json.Marshal(body)
	c.Publish(topicMethodRe+strconv.Itoa(status)+"/?$rid="+rid, 0, false, answer)
}

// apply switches to profile p if the device supports it, reporting the new profile before it
// answers, so a back end that sees the answer sees the reported profile too.
func (g *gateway) apply(c paho.Client, p string) (int, map[string]any) {
	if !g.cfg.supports[p] {
		return 400, map[string]any{"message": "profile " + p + " is not supported"}
	}
	g.mu.Lock()
	previous := g.profile
	g.profile = p
	g.mu.Unlock()
	g.report(c, p)
	return 200, map[string]any{"profile": p, "previous": previous}
}

// desired applies a desired profile change pushed by the hub.
func (g *gateway) desired(c paho.Client, m paho.Message) {
	var patch struct {
		Profile *string `json:"profile"`
	}
	if err := json.Unmarshal(m.Payload(), &patch); err != nil || patch.Profile == nil {
		return
	}
	status, _ := g.apply(c, *patch.Profile)
	g.logf("desired profile %s -> %d", *patch.Profile, status)
}

// twinAnswer logs the hub's refusals of the reported patches.
func (g *gateway) twinAnswer(_ paho.Client, m paho.Message) {
	if !strings.HasPrefix(m.Topic(), "$iothub/twin/res/2") {
		g.logf("twin answer %s %s", m.Topic(), m.Payload())
	}
}

// report sends the profile as a reported property.
func (g *gateway) report(c paho.Client, p string) {
	g.mu.Lock()
	g.rid++
	rid := g.rid
	g.mu.Unlock()
	body, _ := json.Marshal(map[string]string{"profile": p})
	c.Publish(topicReported+strconv.Itoa(rid), 0, false, body)
}

// methodRequest splits $iothub/methods/POST/{name}/?$rid={rid}.
func methodRequest(topic string) (name, rid string, ok bool) {
	rest, found := strings.CutPrefix(topic, "$iothub/methods/POST/")
	if !found {
		return "", "", false
	}
	name, query, found := strings.Cut(rest, "/?")
	if !found {
		return "", "", false
	}
	for _, kv := range strings.Split(query, "&") {
		if v, found := strings.CutPrefix(kv, "$rid="); found && v != "" {
			return name, v, true
		}
	}
	return "", "", false
}
