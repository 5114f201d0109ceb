package emulator

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/query"
)

// This file holds automatic device configurations: their validation, the store's registry of them
// (kept under the store's lock, since running them writes twins), and the run that writes each one's
// device content to the twins it targets, the highest priority winning each path.

// configuration is a validated automatic device configuration.
type configuration struct {
	req      hubapi.Configuration // as given: id, schemaVersion, labels, content, target, priority, metrics
	paths    []configPath         // deviceContent, as desired-property paths
	target   *query.Matcher       // nil: the configuration targets no device
	metrics  map[string]*query.Matcher
	created  int64 // unix nanoseconds; a later one wins ties of priority
	updated  int64
	etag     int64
	targeted int // devices targeted at the last run
	applied  int // of those, devices on which it won at least one path
}

// configPath is one deviceContent entry: a path under properties.desired and the value written there.
type configPath struct {
	segs  []string // after properties.desired
	value any
}

const desiredPrefix = "properties.desired."

// maxConfigurations is how many configurations a hub holds (the hub's quota for standard tiers).
const maxConfigurations = 100

// parseConfiguration validates a configuration as a PUT or a fleet file gives it; the error is a 400
// hub error saying what is wrong.
func parseConfiguration(c *hubapi.Configuration) (*configuration, error) {
	bad := func(format string, args ...any) error {
		return hubErr(hubapi.CodeArgumentInvalid, "Configuration %s: %s", c.ID, fmt.Sprintf(format, args...))
	}
	if err := validConfigID(c.ID); err != nil {
		return nil, hubErr(hubapi.CodeArgumentInvalid, "%v", err)
	}
	if c.Priority < 0 {
		return nil, bad("priority must be zero or more, got %d", c.Priority)
	}
	if c.Content == nil {
		return nil, hubErr(hubapi.CodeArgumentNull, "Configuration %s: content is required", c.ID)
	}
	kinds := 0
	for _, n := range []int{len(c.Content.DeviceContent), len(c.Content.ModulesContent), len(c.Content.ModuleContent)} {
		if n > 0 {
			kinds++
		}
	}
	if kinds != 1 {
		return nil, bad("content must hold one of deviceContent, modulesContent or moduleContent")
	}
	cfg := &configuration{req: *c}
	if cfg.req.SchemaVersion == "" {
		cfg.req.SchemaVersion = "1.0"
	}
	size := 0
	for _, key := range slices.Sorted(maps.Keys(c.Content.DeviceContent)) {
		rest, ok := strings.CutPrefix(key, desiredPrefix)
		if !ok {
			return nil, bad("deviceContent path %q does not start with %s", key, desiredPrefix)
		}
		segs := strings.Split(rest, ".")
		for _, seg := range segs {
			if err := validKey(seg); err != nil {
				return nil, bad("deviceContent path %q: %v", key, err)
			}
		}
		v := c.Content.DeviceContent[key]
		n, err := validateValue(segs[len(segs)-1], v, false, len(segs))
		if err != nil {
			return nil, bad("deviceContent path %q: %v", key, err)
		}
		size += len(rest) + n
		cfg.paths = append(cfg.paths, configPath{segs: segs, value: v})
	}
	if size > maxPropsBytes {
		return nil, bad("deviceContent is %d bytes; desired properties are at most %d", size, maxPropsBytes)
	}
	if strings.TrimSpace(c.TargetCondition) != "" {
		e, err := parseCondition(c.TargetCondition)
		if err != nil {
			return nil, bad("targetCondition is invalid: %v", err)
		}
		cfg.target = query.Compile(e)
	}
	if c.Metrics != nil && len(c.Metrics.Queries) > 0 {
		cfg.metrics = map[string]*query.Matcher{}
		for name, q := range c.Metrics.Queries {
			pq, err := query.Parse(q)
			if err != nil || pq.Collection() != query.Devices {
				return nil, bad("metric %q is not a query over devices: %q", name, q)
			}
			cfg.metrics[name] = pq.Matcher()
		}
	}
	return cfg, nil
}

// validConfigID enforces the hub's configuration id rules: 1 to 128 lower-case letters, digits and
// -:+%_#*?!(),=@;$'.
func validConfigID(id string) error {
	if id == "" || len(id) > 128 {
		return fmt.Errorf("configuration id %.20q must be 1 to 128 characters", id)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("-:+%_#*?!(),=@;$'", c) >= 0 {
			continue
		}
		return fmt.Errorf("configuration id %q contains %q: configuration ids hold lower-case letters, digits and -:+%%_#*?!(),=@;$'", id, c)
	}
	return nil
}

// putConfiguration creates c (ifMatch empty) or updates it (ifMatch an etag or *) at now, then runs
// the configurations. An update may change the target condition, priority, labels and metrics, not
// the content.
func (s *store) putConfiguration(c *hubapi.Configuration, ifMatch string, now int64) (hubapi.Configuration, error) {
	cfg, err := parseConfiguration(c)
	if err != nil {
		return hubapi.Configuration{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, exists := s.configs[c.ID]
	update := strings.Trim(strings.TrimSpace(ifMatch), `"`) != ""
	switch {
	case update && !exists:
		return hubapi.Configuration{}, hubErr(hubapi.CodeConfigurationNotFound, "Configuration %s not found", c.ID)
	case update:
		if etag, cond := parseIfMatch(ifMatch); cond && etag != deviceETag(old.etag) {
			return hubapi.Configuration{}, hubErr(hubapi.CodePreconditionFailed, "Precondition failed: the configuration's etag does not match")
		}
		if !sameContent(old.req.Content, cfg.req.Content) {
			return hubapi.Configuration{}, hubErr(hubapi.CodeArgumentInvalid, "Configuration %s: the content of a configuration cannot be updated", c.ID)
		}
		cfg.created, cfg.etag = old.created, old.etag+1
	case exists:
		return hubapi.Configuration{}, hubErr(hubapi.CodeConfigurationAlreadyExists, "Configuration %s already exists", c.ID)
	case len(s.configs) >= maxConfigurations:
		return hubapi.Configuration{}, hubErr(hubapi.CodeIotHubQuotaExceeded, "The hub holds %d configurations already", maxConfigurations)
	default:
		cfg.created, cfg.etag = now, 1
	}
	cfg.updated = now
	s.addConfig(cfg)
	s.runConfigsLocked(now)
	return s.configJSON(cfg), nil
}

// loadConfig adds a fleet file's configuration, created at created; callers hold mu. The
// configurations run once the fleet is loaded.
func (s *store) loadConfig(c *hubapi.Configuration, created int64) error {
	cfg, err := parseConfiguration(c)
	if err != nil {
		return err
	}
	if _, dup := s.configs[c.ID]; dup {
		return fmt.Errorf("configuration %q is defined more than once", c.ID)
	}
	cfg.created, cfg.updated, cfg.etag = created, created, 1
	s.addConfig(cfg)
	return nil
}

// restoreConfig adds a configuration read back from the data file.
func (s *store) restoreConfig(sc *snapConfig) error {
	cfg, err := parseConfiguration(&sc.Request)
	if err != nil {
		return err
	}
	cfg.created, cfg.updated, cfg.etag = sc.Times[0], sc.Times[1], sc.ETag
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addConfig(cfg)
	return nil
}

// forEachConfig calls f with each configuration in id order, under the read lock, until f fails.
func (s *store) forEachConfig(f func(c *configuration) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, id := range slices.Sorted(maps.Keys(s.configs)) {
		if err := f(s.configs[id]); err != nil {
			return err
		}
	}
	return nil
}

// addConfig stores cfg, replacing one of its id; callers hold mu.
func (s *store) addConfig(cfg *configuration) {
	if s.configs == nil {
		s.configs = map[string]*configuration{}
	}
	s.configs[cfg.req.ID] = cfg
}

// sameContent reports whether two contents are the same JSON.
func sameContent(a, b *hubapi.ConfigurationContent) bool {
	return string(appendValue(nil, contentValue(a))) == string(appendValue(nil, contentValue(b)))
}

func contentValue(c *hubapi.ConfigurationContent) map[string]any {
	out := map[string]any{}
	if c == nil {
		return out
	}
	out["d"] = c.DeviceContent
	out["m"] = c.ModuleContent
	ms := map[string]any{}
	for k, v := range c.ModulesContent {
		ms[k] = v
	}
	out["ms"] = ms
	return out
}

// configuration returns the configuration id as the hub answers it.
func (s *store) configuration(id string) (hubapi.Configuration, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.configs[id]
	if !ok {
		return hubapi.Configuration{}, hubErr(hubapi.CodeConfigurationNotFound, "Configuration %s not found", id)
	}
	return s.configJSON(c), nil
}

// configurationList returns up to top configurations in id order.
func (s *store) configurationList(top int) []hubapi.Configuration {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := []hubapi.Configuration{}
	for _, id := range slices.Sorted(maps.Keys(s.configs)) {
		if len(out) == top {
			break
		}
		out = append(out, s.configJSON(s.configs[id]))
	}
	return out
}

// removeConfiguration deletes a configuration, conditional on ifMatch. The twins keep what it wrote.
func (s *store) removeConfiguration(id, ifMatch string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.configs[id]
	if !ok {
		return hubErr(hubapi.CodeConfigurationNotFound, "Configuration %s not found", id)
	}
	if etag, cond := parseIfMatch(ifMatch); cond && etag != deviceETag(c.etag) {
		return hubErr(hubapi.CodePreconditionFailed, "Precondition failed: the configuration's etag does not match")
	}
	delete(s.configs, id)
	return nil
}

// configJSON renders c with its system metrics from the last run and its custom metrics counted now;
// callers hold mu.
func (s *store) configJSON(c *configuration) hubapi.Configuration {
	out := c.req
	created, updated := hubapi.NewTime(time.Unix(0, c.created)), hubapi.NewTime(time.Unix(0, c.updated))
	out.CreatedTimeUTC, out.LastUpdatedTimeUTC, out.ETag = &created, &updated, deviceETag(c.etag)
	out.SystemMetrics = &hubapi.ConfigurationMetrics{
		Queries: map[string]string{
			"targetedCount": "select deviceId from devices where " + c.req.TargetCondition,
			"appliedCount":  "select deviceId from devices where configurations.[[" + c.req.ID + "]].status = 'Applied'",
		},
		Results: map[string]int64{"targetedCount": int64(c.targeted), "appliedCount": int64(c.applied)},
	}
	out.Metrics = &hubapi.ConfigurationMetrics{Queries: map[string]string{}, Results: map[string]int64{}}
	if c.req.Metrics != nil {
		maps.Copy(out.Metrics.Queries, c.req.Metrics.Queries)
	}
	for name, m := range c.metrics {
		n := int64(0)
		for _, d := range s.order {
			if !d.deleted && m.Match((*twinDoc)(d)) {
				n++
			}
		}
		out.Metrics.Results[name] = n
	}
	return out
}

// runConfigs writes each configuration's device content to the twins it targets now.
func (s *store) runConfigs(now int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.runConfigsLocked(now)
}

// runConfigsLocked is runConfigs with mu held. Each path of properties.desired is written by the
// winner among the configurations that target the twin and write it or a path around it: the highest
// priority, then the latest created, then the smallest id. A path whose value the twin already holds
// is not written again, so a twin changes (version, push to its device) only when a winner's value
// differs from what it holds: a change someone else made to such a path is written back.
func (s *store) runConfigsLocked(now int64) {
	if len(s.configs) == 0 {
		return
	}
	order := slices.SortedFunc(maps.Values(s.configs), func(a, b *configuration) int {
		switch {
		case a.req.Priority != b.req.Priority:
			return int(b.req.Priority) - int(a.req.Priority)
		case a.created != b.created:
			return cmp.Compare(b.created, a.created)
		}
		return strings.Compare(a.req.ID, b.req.ID)
	})
	for _, c := range order {
		c.targeted, c.applied = 0, 0
	}
	var hits []*configuration
	for _, d := range s.order {
		if d.deleted {
			continue
		}
		hits = hits[:0]
		for _, c := range order {
			if c.target != nil && c.target.Match((*twinDoc)(d)) {
				hits = append(hits, c)
				c.targeted++
			}
		}
		if len(hits) == 0 {
			continue
		}
		if patch := configPatch(d.desired, hits); len(patch) > 0 {
			// A value that would take the twin past its limits is not written; the twin stays as it is.
			_ = s.applyWrite(d, &twinWrite{desired: patch, hasDesired: true}, nil, nil, now)
		}
	}
}

// configPatch is the desired patch that makes desired hold the winning value of every path the
// configurations hits (in winning order) write; it counts each configuration that wins a path.
func configPatch(desired map[string]any, hits []*configuration) map[string]any {
	var won [][]string
	var patch map[string]any
	for _, c := range hits {
		wins := false
		for _, p := range c.paths {
			if slices.ContainsFunc(won, func(w []string) bool { return overlaps(w, p.segs) }) {
				continue
			}
			won = append(won, p.segs)
			wins = true
			if holds(lookupPath(desired, p.segs), p.value) {
				continue
			}
			if patch == nil {
				patch = map[string]any{}
			}
			setPath(patch, p.segs, p.value)
		}
		if wins {
			c.applied++
		}
	}
	return patch
}

// overlaps reports whether one path is the other or lies under it.
func overlaps(a, b []string) bool {
	n := min(len(a), len(b))
	return slices.Equal(a[:n], b[:n])
}

func lookupPath(m map[string]any, segs []string) any {
	var v any = m
	for _, s := range segs {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[s]
	}
	return v
}

func setPath(m map[string]any, segs []string, v any) {
	for _, s := range segs[:len(segs)-1] {
		next, ok := m[s].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[s] = next
		}
		m = next
	}
	m[segs[len(segs)-1]] = v
}

// holds reports whether merge-patching cur with v would leave it unchanged.
func holds(cur, v any) bool {
	if v == nil {
		return cur == nil
	}
	vm, ok := v.(map[string]any)
	if !ok {
		return string(appendValue(nil, cur)) == string(appendValue(nil, v))
	}
	cm, ok := cur.(map[string]any)
	if !ok {
		return false
	}
	for k, e := range vm {
		if !holds(cm[k], e) {
			return false
		}
	}
	return true
}
