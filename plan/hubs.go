package plan

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/iot-rollout/rollout/query"
	"gopkg.in/yaml.v3"
)

// connectionRef is a hub's connection written as a reference: env: and an environment variable name.
var connectionRef = regexp.MustCompile(`^env:([A-Za-z_][A-Za-z0-9_]*)$`)

// hostName is a hub's host: DNS labels, optionally with a port (a local hub).
var hostName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*(:[0-9]{1,5})?$`)

// hubNamePattern is the schema's pattern for hub names, repeated for the semantic checks that run on
// names the schema may not have seen (a wave's hubs list).
var hubNamePattern = regexp.MustCompile(`^[a-z][a-z0-9-]{0,19}$`)

// hubs checks and resolves the plan's hubs mapping. A connection must be a reference: anything else
// may be a secret pasted into the plan, so the message never repeats the value.
func (c *checker) hubs(r ref) {
	n := deref(r.node)
	if n == nil || n.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		name := deref(n.Content[i]).Value
		h := ref{key: n.Content[i], node: n.Content[i+1], path: keyPath(r.path, name)}
		if deref(h.node) == nil || deref(h.node).Kind != yaml.MappingNode || !hubNamePattern.MatchString(name) {
			continue // the schema reported it
		}
		if slices.ContainsFunc(c.p.Hubs, func(x Hub) bool { return x.Name == name }) {
			continue // a duplicate key, reported already
		}
		hub := Hub{Name: name, Units: 1}
		conn, host := h.get("connection"), h.get("host")
		switch {
		case conn.ok() && host.ok():
			c.add(Error, host.at(), h.path, "keep connection: env:VAR for a SAS connection string, or host: for Microsoft Entra",
				"hub %q has both connection and host", name)
		case !conn.ok() && !host.ok():
			c.add(Error, h.at(), h.path, "add connection: env:VAR (a SAS connection string in the environment) or host: HOST (Microsoft Entra)",
				"hub %q says neither connection nor host", name)
		}
		if s, ok := str(conn); ok {
			if m := connectionRef.FindStringSubmatch(s); m != nil {
				hub.Connection = m[1]
			} else {
				example := "env:IOTHUB_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")) + "_CONNECTION_STRING"
				hint := "write env: and the environment variable that holds the connection string, e.g. " + example
				if strings.Contains(strings.ToLower(s), "sharedaccesskey") {
					hint = "this looks like a connection string: remove it from the plan (rotate its key if the plan was shared), set it in an environment variable and name that here, e.g. " + example
				}
				c.add(Error, conn.node, conn.path, hint, "hub %q: connection must be a reference such as env:VAR; a secret never belongs in a plan", name)
			}
		}
		if s, ok := str(host); ok {
			if hostName.MatchString(s) {
				hub.Host = s
			} else {
				c.add(Error, host.node, host.path, "give the hub's host name, such as contoso-us.azure-devices.net", "hub %q: host is not a host name", name)
			}
		}
		hub.Tier, _ = str(h.get("tier"))
		if v, ok := integer(h.get("units")); ok && v >= 1 {
			hub.Units = v
		}
		c.p.Hubs = append(c.p.Hubs, hub)
	}
	sort.Slice(c.p.Hubs, func(i, j int) bool { return c.p.Hubs[i].Name < c.p.Hubs[j].Name })
}

// waveHubs resolves wave w's hubs: its own list, checked against the plan's hubs (with "did you
// mean"), else every hub; nil when the plan has none.
func (c *checker) waveHubs(w ref) []string {
	all := c.p.HubNames()
	list := w.get("hubs")
	n := deref(list.node)
	if n == nil || n.Kind != yaml.SequenceNode {
		return all
	}
	if len(all) == 0 {
		c.add(Error, list.at(), list.path, "add a hubs: mapping at the top of the plan naming each hub, or remove the wave's hubs",
			"the wave names hubs, but the plan has no hubs")
		return nil
	}
	var out []string
	for i, item := range n.Content {
		name, ok := str(ref{node: item})
		if !ok {
			continue // the schema reported it
		}
		if !slices.Contains(all, name) {
			hint := "the plan's hubs are " + strings.Join(all, ", ")
			if m := closest(name, all); m != "" {
				hint = fmt.Sprintf("did you mean %q?", m)
			}
			c.add(Error, item, indexPath(list.path, i), hint, "unknown hub %q", name)
			continue
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		return all // every name was wrong: reported; check the rest as if it ran everywhere
	}
	return out
}

// unusedHubs reports a hub that no wave runs on. It is an error, not a warning: the rollout would
// end "done" with that hub's devices never changed, and a hub listed in a plan is meant to be rolled
// out to.
func (c *checker) unusedHubs(r ref) {
	n := deref(r.node)
	if n == nil || n.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		name := deref(n.Content[i]).Value
		used := false
		for _, w := range c.p.Waves {
			used = used || slices.Contains(w.Hubs, name)
		}
		if !used && slices.ContainsFunc(c.p.Hubs, func(h Hub) bool { return h.Name == name }) {
			c.add(Error, n.Content[i], keyPath(r.path, name), "add it to a wave's hubs (a wave without hubs runs on every hub), or remove it",
				"no wave runs on hub %q", name)
		}
	}
}

// covers reports whether wave e runs on every hub wave w runs on (always, in a plan without hubs):
// only then can e's target exclude devices from w's condition on all of w's hubs.
func covers(e, w Wave) bool {
	for _, h := range w.Hubs {
		if !slices.Contains(e.Hubs, h) {
			return false
		}
	}
	return true
}

// OnHub returns the part of p that runs on hub, one of p's hubs, as a plan without hubs: the waves
// that run on hub, in order, each wave's Condition being its ConditionOn(hub) in p. Hash, File and
// the rest stay p's (so job ids are p's). It returns nil when no wave runs on hub. A preview works
// out each hub's part with it, on that hub's own client and device ids.
func (p *Plan) OnHub(hub string) *Plan {
	q := *p
	q.Hubs, q.Waves = nil, nil
	for _, w := range p.Waves {
		if slices.Contains(w.Hubs, hub) {
			w.Hubs = nil
			q.Waves = append(q.Waves, w)
		}
	}
	if len(q.Waves) == 0 {
		return nil
	}
	q.conditions = make([]query.Expr, len(q.Waves))
	for i := range q.Waves {
		q.conditions[i] = q.compose(i)
	}
	return &q
}
