package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/plan"
	"github.com/iot-rollout/rollout/query"
)

// snapshot captures, for every device of batch bi of wave wi, the prior value of each path the wave's
// twin update patches, and marks the batch snapshotted, in one transaction. Query results can lag the
// twins (by seconds, at worst minutes), so a twin changed by someone else just before its snapshot may
// be captured, and later restored, as it was before that change; twin reads do not lag. Where the hub's quotas
// make it faster it reads twins with paged `SELECT *` queries over deviceId IN [...] (100 twins a
// request); otherwise, as on S1 with its 20 queries a minute but 100 twin reads a second, and for the
// devices a lagging query did not return yet, it reads twins one by one, in parallel.
func (r *runner) snapshot(ctx context.Context, wi, bi int) error {
	b := r.st.Waves[wi].Batches[bi]
	ids, err := r.waveDevices(wi)
	if err != nil {
		return err
	}
	priors, err := r.capture(ctx, ids[b.Start:b.End], r.p.Waves[wi].Action.TwinUpdate)
	if err != nil {
		return err
	}
	return r.storeSnapshot(wi, bi, priors)
}

// capture reads the prior values of ids. It only reads the hub, so it may run in the background.
func (r *runner) capture(ctx context.Context, ids []string, tu *plan.TwinUpdate) (map[string][]byte, error) {
	priors := make(map[string][]byte, len(ids))
	if r.queryFasterThanReads() {
		if err := r.snapshotByQuery(ctx, ids, tu, priors); err != nil {
			return nil, err
		}
	}
	var missing []string
	for _, id := range ids {
		if _, ok := priors[id]; !ok {
			missing = append(missing, id)
		}
	}
	if err := r.snapshotByReads(ctx, missing, tu, priors); err != nil {
		return nil, err
	}
	return priors, nil
}

// storeSnapshot stores a batch's priors and marks it snapshotted, in one transaction.
func (r *runner) storeSnapshot(wi, bi int, priors map[string][]byte) error {
	b := &r.st.Waves[wi].Batches[bi]
	b.Snapshotted = true
	r.st.Updated = r.now().UTC()
	err := r.Store.Update(func(tx *Tx) error {
		// In key order: bbolt inserts into a node by moving what follows, so a batch's priors written
		// in map order cost the square of the batch; in order, each lands at the end.
		for _, id := range slices.Sorted(maps.Keys(priors)) {
			if err := tx.putSnapshotJSON(id, priors[id]); err != nil {
				return err
			}
		}
		return tx.PutState(r.st)
	})
	if err != nil {
		b.Snapshotted = false
		return err
	}
	r.emit(Event{Type: EventSnapshot, Wave: wi, Batch: bi, Devices: len(priors)})
	return nil
}

// encodedPrior is capturePrior in its stored form: a device's prior takes tens of bytes this way,
// against hundreds as a map, and a batch holds them all until they are stored.
func encodedPrior(tags, desired map[string]any, tu *plan.TwinUpdate) []byte {
	data, _ := json.Marshal(capturePrior(tags, desired, tu)) // strings and raw JSON only: cannot fail
	return data
}

// capturePrior records the prior value of every path the update patches. It descends into an object
// only where both the patch and the twin have an object (a twin patch merges objects), so restoring
// the recorded values undoes the patch exactly; a property the twin lacked is recorded as absent. (A
// twin never holds a JSON null: null in a patch removes the property, so absent and null agree.)
func capturePrior(tags, desired map[string]any, tu *plan.TwinUpdate) Prior {
	p := Prior{}
	if tu == nil {
		return p
	}
	walkPrior(p, "tags", tu.Tags, tags)
	walkPrior(p, "properties.desired", tu.Desired, desired)
	return p
}

func walkPrior(p Prior, prefix string, patch, cur map[string]any) {
	for k, pv := range patch {
		path := prefix + "." + k
		cv, ok := cur[k]
		if !ok {
			p[path] = PriorValue{Absent: true}
			continue
		}
		pm, pIsObj := pv.(map[string]any)
		cm, cIsObj := cv.(map[string]any)
		if pIsObj && cIsObj {
			walkPrior(p, path, pm, cm)
			continue
		}
		raw, err := json.Marshal(cv)
		if err != nil {
			raw = json.RawMessage("null")
		}
		p[path] = PriorValue{Value: raw}
	}
}

// restorePatch is the twin patch that puts back a device's prior values: each recorded value, and JSON
// null (which removes a property) for each that was absent.
func restorePatch(p Prior) *hubapi.Twin {
	t := &hubapi.Twin{}
	for path, v := range p {
		var val any = v.Value
		if v.Absent {
			val = nil
		}
		var root *map[string]any
		var rest string
		switch {
		case strings.HasPrefix(path, "tags."):
			if t.Tags == nil {
				t.Tags = map[string]any{}
			}
			root, rest = &t.Tags, strings.TrimPrefix(path, "tags.")
		case strings.HasPrefix(path, "properties.desired."):
			if t.Properties == nil {
				t.Properties = &hubapi.TwinProperties{Desired: map[string]any{}}
			}
			root, rest = &t.Properties.Desired, strings.TrimPrefix(path, "properties.desired.")
		default:
			continue
		}
		m := *root
		keys := strings.Split(rest, ".")
		for _, k := range keys[:len(keys)-1] {
			next, ok := m[k].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[k] = next
			}
			m = next
		}
		m[keys[len(keys)-1]] = val
	}
	return t
}

// queryFasterThanReads compares the twins per second that paged queries and single twin reads give
// under the hub's quotas.
func (r *runner) queryFasterThanReads() bool {
	qpm, reads := r.Quotas.QueriesPerMinute, r.Quotas.TwinReadsPerSec
	if math.IsInf(qpm, 1) || qpm <= 0 {
		return true
	}
	return qpm/60*float64(pageSize(r.Quotas)) >= reads
}

// snapshotByQuery reads the patched properties of ids with paged queries. When every top-level key
// the patch touches is a plain identifier it projects just those (`SELECT deviceId, tags.k AS t0,
// properties.desired.k AS d0 ...`, a projection leaves out undefined properties, so a missing column
// is an absent property); otherwise it reads whole twins.
func (r *runner) snapshotByQuery(ctx context.Context, ids []string, tu *plan.TwinUpdate, priors map[string][]byte) error {
	tagKeys, desiredKeys := sortedKeys(tu.Tags), sortedKeys(tu.Desired)
	project := true
	for _, k := range append(append([]string{}, tagKeys...), desiredKeys...) {
		if !identifier(k) {
			project = false
		}
	}
	prefix := "SELECT * FROM devices WHERE "
	if project {
		var cols []string
		for i, k := range tagKeys {
			cols = append(cols, fmt.Sprintf("tags.%s AS t%d", k, i))
		}
		for i, k := range desiredKeys {
			cols = append(cols, fmt.Sprintf("properties.desired.%s AS d%d", k, i))
		}
		prefix = "SELECT deviceId, " + strings.Join(cols, ", ") + " FROM devices WHERE "
	}
	// Chunks are independent queries: a few run at once (the client paces them to the tier).
	var mu sync.Mutex
	err := r.queryByID(ctx, prefix, ids, 4, func(raw json.RawMessage) error {
		id, data, err := priorFromRow(raw, project, tagKeys, desiredKeys, tu)
		if err != nil {
			return err
		}
		mu.Lock()
		priors[id] = data
		mu.Unlock()
		return nil
	})
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	return nil
}

// priorFromRow reads one snapshot query row: a projection (see snapshotByQuery) or a whole twin.
func priorFromRow(raw json.RawMessage, project bool, tagKeys, desiredKeys []string, tu *plan.TwinUpdate) (string, []byte, error) {
	var row map[string]any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&row); err != nil {
		return "", nil, fmt.Errorf("snapshot: unexpected row %s", raw)
	}
	id, _ := row["deviceId"].(string)
	if id == "" {
		return "", nil, fmt.Errorf("snapshot: row without deviceId: %s", raw)
	}
	var tags, desired map[string]any
	if project {
		tags, desired = map[string]any{}, map[string]any{}
		for i, k := range tagKeys {
			if v, ok := row["t"+strconv.Itoa(i)]; ok {
				tags[k] = v
			}
		}
		for i, k := range desiredKeys {
			if v, ok := row["d"+strconv.Itoa(i)]; ok {
				desired[k] = v
			}
		}
	} else {
		tags, _ = row["tags"].(map[string]any)
		if props, ok := row["properties"].(map[string]any); ok {
			desired, _ = props["desired"].(map[string]any)
		}
	}
	return id, encodedPrior(tags, desired, tu), nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// identifier reports whether key can be written bare after a dot in a query path, by the query
// package's one rule for escaping path segments.
func identifier(key string) bool {
	return query.Path{Segments: []string{"tags", key}}.String() == "tags."+key
}

// snapshotByReads reads the twins of ids one by one with parallel workers; a device that does not exist
// gets no prior (no job can change it).
func (r *runner) snapshotByReads(ctx context.Context, ids []string, tu *plan.TwinUpdate, priors map[string][]byte) error {
	if len(ids) == 0 {
		return nil
	}
	var mu sync.Mutex
	return forEach(ctx, ids, min(r.Workers, len(ids)), func(ctx context.Context, id string) error {
		twin, err := r.Hub.GetTwin(ctx, id)
		switch {
		case err == nil:
			var desired map[string]any
			if twin.Properties != nil {
				desired = twin.Properties.Desired
			}
			mu.Lock()
			priors[id] = encodedPrior(twin.Tags, desired, tu)
			mu.Unlock()
		case !hubapi.IsNotFound(err):
			return fmt.Errorf("snapshot %s: %w", id, err)
		}
		return nil
	})
}

// ChangedSince lists, sorted, the paths of prior p (the paths a twin update patched) whose value in
// the twin (its tags and desired properties now) is no longer what patch wrote there: someone changed
// them after the rollout did, and restoring the prior value would overwrite their change. A path the
// patch removed (JSON null) must still be absent.
func ChangedSince(p Prior, patch *plan.TwinUpdate, tags, desired map[string]any) []string {
	var out []string
	for path := range p {
		var wrote, now any
		var wroteOK, nowOK bool
		switch {
		case strings.HasPrefix(path, "tags."):
			rest := strings.Split(strings.TrimPrefix(path, "tags."), ".")
			wrote, wroteOK = lookup(patch.Tags, rest)
			now, nowOK = lookup(tags, rest)
		case strings.HasPrefix(path, "properties.desired."):
			rest := strings.Split(strings.TrimPrefix(path, "properties.desired."), ".")
			wrote, wroteOK = lookup(patch.Desired, rest)
			now, nowOK = lookup(desired, rest)
		default:
			continue
		}
		if !wroteOK {
			continue // not a path this patch writes (a prior of another plan): nothing to compare
		}
		if wrote == nil {
			if nowOK {
				out = append(out, path)
			}
			continue
		}
		if !nowOK || !sameJSON(wrote, now) {
			out = append(out, path)
		}
	}
	sort.Strings(out)
	return out
}

// lookup walks m by keys; ok is false when a key is missing.
func lookup(m map[string]any, keys []string) (v any, ok bool) {
	v = m
	for _, k := range keys {
		obj, isObj := v.(map[string]any)
		if !isObj {
			return nil, false
		}
		if v, ok = obj[k]; !ok {
			return nil, false
		}
	}
	return v, true
}

// sameJSON reports whether a and b are the same JSON value (numbers compared as JSON writes them).
func sameJSON(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(normalJSON(ja), normalJSON(jb))
}

// normalJSON rewrites JSON with its numbers as float64s write them, so 2 and 2.0 compare equal.
func normalJSON(data []byte) []byte {
	var v any
	if json.Unmarshal(data, &v) != nil {
		return data
	}
	out, _ := json.Marshal(v)
	return out
}
