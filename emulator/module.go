package emulator

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/query"
)

// This file holds module identities: the store's registry of them and their twins. A module is kept
// in a device struct of its own, whose id is its device's and whose mod names the module, so that
// twin writes, reported patches, desired pushes, direct methods and connections serve modules and
// devices alike; everything that names an identity by one string uses its key (device.key).

// moduleInfo is what makes a device struct a module identity.
type moduleInfo struct {
	id        string
	idAny     any    // id boxed once, for query evaluation
	key       string // {deviceId}/{moduleId}
	managedBy string
}

// moduleKey is the key of module mid of device id.
func moduleKey(id, mid string) string { return id + "/" + mid }

// identity returns the live device or module that key names (see device.key); callers hold mu.
func (s *store) identity(key string) (*device, error) {
	if id, mid, ok := strings.Cut(key, "/"); ok {
		return s.module(id, mid)
	}
	return s.get(key)
}

// module returns the live module mid of device id; callers hold mu.
func (s *store) module(id, mid string) (*device, error) {
	if _, err := s.get(id); err != nil {
		return nil, err
	}
	m, ok := s.mods[moduleKey(id, mid)]
	if !ok {
		return nil, hubErr(hubapi.CodeModuleNotFound, "Module %s not found on device %s", mid, id)
	}
	return m, nil
}

// newModule builds module mid of parent at now. It is simulated as its device is: online, failing
// and reporting back as the device's behaviour and shares decide, and waiting for a client when the
// device's driver is external.
func (s *store) newModule(parent *device, mid string, now int64) *device {
	m := &device{id: parent.id, beh: parent.beh, flags: parent.flags &^ (flagExternal | flagConnected),
		mod: &moduleInfo{id: mid, idAny: mid, key: moduleKey(parent.id, mid)}}
	if parent.beh.External {
		m.flags |= flagExternal
	}
	s.initDevice(m, now)
	return m
}

// insertModule adds module m; callers hold mu.
func (s *store) insertModule(m *device) error {
	if _, dup := s.mods[m.mod.key]; dup {
		return hubErr(hubapi.CodeModuleAlreadyExistsOnDevice, "A module with ID '%s' already exists on device '%s'.", m.mod.id, m.id)
	}
	if s.mods == nil {
		s.mods = map[string]*device{}
	}
	s.mods[m.mod.key] = m
	s.modOrder = append(s.modOrder, m)
	return nil
}

// addModule inserts a module read back from the data file, after its device.
func (s *store) addModule(m *device) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.get(m.id); err != nil {
		return err
	}
	return s.insertModule(m)
}

// createModule adds a module through the registry API.
func (s *store) createModule(req *hubapi.Module, now int64) (device, error) {
	if err := validModuleID(req.ModuleID); err != nil {
		return device{}, hubErr(hubapi.CodeArgumentInvalid, "%v", err)
	}
	if err := checkKeys(req.Authentication); err != nil {
		return device{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	parent, err := s.get(req.DeviceID)
	if err != nil {
		return device{}, err
	}
	m := s.newModule(parent, req.ModuleID, now)
	m.mod.managedBy = req.ManagedBy
	s.setKeys(m, req.Authentication)
	if err := s.insertModule(m); err != nil {
		return device{}, err
	}
	return *m, nil
}

// setKeys gives d the symmetric keys a registry write names; one left empty is generated, as the hub
// does, and none given keeps the derived ones.
func (s *store) setKeys(d *device, a *hubapi.AuthenticationMechanism) {
	if a == nil || a.SymmetricKey == nil || a.SymmetricKey.PrimaryKey == "" && a.SymmetricKey.SecondaryKey == "" {
		return
	}
	p, sk := s.keys(&device{id: d.id, mod: d.mod})
	d.primaryKey, d.secondaryKey = a.SymmetricKey.PrimaryKey, a.SymmetricKey.SecondaryKey
	if d.primaryKey == "" {
		d.primaryKey = p
	}
	if d.secondaryKey == "" {
		d.secondaryKey = sk
	}
}

// updateModule replaces a module's mutable identity fields (PUT with If-Match).
func (s *store) updateModule(req *hubapi.Module, ifMatch string) (device, error) {
	if err := checkKeys(req.Authentication); err != nil {
		return device{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.module(req.DeviceID, req.ModuleID)
	if err != nil {
		return device{}, err
	}
	if etag, cond := parseIfMatch(ifMatch); cond && etag != deviceETag(m.deviceETag) {
		return device{}, hubErr(hubapi.CodePreconditionFailed, "Precondition failed: Module version did not match")
	}
	m.mod.managedBy = req.ManagedBy
	s.setKeys(m, req.Authentication)
	m.deviceETag++
	return *m, nil
}

// removeModule deletes a module identity and its twin, conditional on ifMatch.
func (s *store) removeModule(id, mid, ifMatch string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.module(id, mid)
	if err != nil {
		return err
	}
	if etag, cond := parseIfMatch(ifMatch); cond && etag != deviceETag(m.deviceETag) {
		return hubErr(hubapi.CodePreconditionFailed, "ETag mismatch for module ID '%s' on device '%s'", mid, id)
	}
	s.dropModule(m, "the module was deleted")
	return nil
}

// dropModule deletes module m, closing its connection for reason; callers hold mu.
func (s *store) dropModule(m *device, reason string) {
	m.deleted = true
	delete(s.mods, m.mod.key)
	s.modOrder = slices.DeleteFunc(s.modOrder, func(x *device) bool { return x == m })
	s.revokeIdentity(m, reason)
}

// revokeIdentity closes d's live connection for reason; callers hold mu.
func (s *store) revokeIdentity(d *device, reason string) {
	if d.flags&flagConnected != 0 && s.revoke != nil {
		d.flags &^= flagConnected
		s.revoke(d.key(), reason)
	}
}

// modulesOf returns the modules of device id in creation order; callers hold mu.
func (s *store) modulesOf(id string) []*device {
	var out []*device
	for _, m := range s.modOrder {
		if m.id == id {
			out = append(out, m)
		}
	}
	return out
}

// moduleList is the registry view of device id's modules.
func (s *store) moduleList(id string) ([]*hubapi.Module, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if _, err := s.get(id); err != nil {
		return nil, err
	}
	out := []*hubapi.Module{}
	for _, m := range s.modulesOf(id) {
		out = append(out, s.moduleJSON(m))
	}
	return out, nil
}

// moduleJSON is the registry view of module m.
func (s *store) moduleJSON(m *device) *hubapi.Module {
	p, sk := s.keys(m)
	act := hubapi.NewTime(time.Time{})
	if m.lastActivity != 0 {
		act = hubapi.NewTime(time.Unix(0, m.lastActivity))
	}
	ct := hubapi.NewTime(time.Unix(0, m.connectionStateAt()))
	return &hubapi.Module{
		ModuleID:                   m.mod.id,
		ManagedBy:                  m.mod.managedBy,
		DeviceID:                   m.id,
		GenerationID:               "6" + strconv.FormatUint(hashID(s.seed, 0, m.mod.key)%1e17, 10),
		ETag:                       deviceETag(m.deviceETag),
		ConnectionState:            m.connectionState(),
		ConnectionStateUpdatedTime: &ct,
		LastActivityTime:           &act,
		Authentication: &hubapi.AuthenticationMechanism{
			Type:           "sas",
			SymmetricKey:   &hubapi.SymmetricKey{PrimaryKey: p, SecondaryKey: sk},
			X509Thumbprint: &hubapi.X509Thumbprint{},
		},
	}
}

// matchModules returns the module twins m matches, in creation order, up to top of them (-1: all).
// Module queries see module twins as they are now: the query lag applies to device twins only.
func (s *store) matchModules(m *query.Matcher, top int) []*device {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*device
	for _, d := range s.modOrder {
		if top >= 0 && len(out) >= top {
			break
		}
		if m.Match((*twinDoc)(d)) {
			out = append(out, d)
		}
	}
	return out
}
