package emulator

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iot-rollout/rollout/emulator/internal/iotmqtt"
	"github.com/iot-rollout/rollout/hubapi"
)

// This file is the registry of live device connections: who is connected, what each subscribed to,
// the direct-method calls waiting for an answer, and the messages queued for each connection. It takes
// its own lock and never calls the store while holding it; the store calls it (pushDesired) with the
// store's lock held, so the lock order is the store's before the connections'.

// outMessage is one PUBLISH queued for a connection.
type outMessage struct {
	topic   string
	payload []byte
}

// maxQueued bounds the messages waiting to be written to one connection; past it, a message is
// dropped and counted, so that a client that stops reading cannot hold the emulator's memory. A
// device has few messages in flight (a method call, a desired patch), and 10,000 connections each
// keep one such buffer.
const maxQueued = 64

// session is one live device connection.
type session struct {
	id         string // the identity's key: the device id, or {deviceId}/{moduleId}
	device     string
	module     string // "" for a device
	transport  string // "mqtt" or "mqtt-ws"
	since      time.Time
	apiVersion string
	clientType string
	out        chan outMessage // drained by the transport's writer
	closed     chan struct{}   // closed when the connection has ended
	ready      chan struct{}   // closed once CONNACK is written: nothing is published before
	keep       bool            // a clean=0 session: its subscriptions outlive it
	client     any             // the transport's handle of the connection
	stop       func(error)     // closes the connection; must not block
	endOnce    sync.Once

	// guarded by connections.mu
	subs      map[iotmqtt.Subscription]string // kind → the filter as sent
	telemetry int64
	dropped   int64
	lastError string
}

// send queues a message for the connection without blocking; false when the queue is full.
func (ss *session) send(topic string, payload []byte) bool {
	select {
	case ss.out <- outMessage{topic, payload}:
		return true
	case <-ss.closed:
		return false
	default:
		return false
	}
}

// answer queues the answer to one of the connection's own requests, waiting for room: it runs on the
// connection's reading goroutine, so a client that sends faster than it reads is slowed down rather
// than losing answers.
func (ss *session) answer(topic string, payload []byte) {
	select {
	case ss.out <- outMessage{topic, payload}:
	case <-ss.closed:
	}
}

// methodAnswer is a device's answer to a direct method, or gone when its connection ended first.
type methodAnswer struct {
	status  int
	payload json.RawMessage
	gone    bool
}

type pendingCall struct {
	ss *session
	ch chan methodAnswer // buffered 1
}

// LastConnection is what /_emulator/connections remembers of a device's connection once it ended.
type LastConnection struct {
	Transport        string    `json:"transport"`
	Since            time.Time `json:"since"`
	Until            time.Time `json:"until"`
	DisconnectReason string    `json:"disconnectReason"`
}

// connections is the registry of live device connections.
type connections struct {
	mu        sync.Mutex
	byID      map[string]*session
	kept      map[string]map[iotmqtt.Subscription]string // subscriptions of clean=0 sessions between connections
	pending   map[string]*pendingCall                    // by $rid
	last      map[string]LastConnection
	online    chan struct{} // closed and replaced when a session subscribes to methods
	nextRID   atomic.Uint64
	telemetry atomic.Int64
}

func newConnections() *connections {
	return &connections{byID: map[string]*session{}, kept: map[string]map[iotmqtt.Subscription]string{},
		pending: map[string]*pendingCall{}, last: map[string]LastConnection{}, online: make(chan struct{})}
}

// add makes ss the device's live connection; with keep (a clean=0 session) it inherits the
// subscriptions the device's previous session held, as the hub keeps them across reconnects.
func (c *connections) add(ss *session, keep bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ss.subs = map[iotmqtt.Subscription]string{}
	if keep {
		from := c.kept[ss.id]
		if old := c.byID[ss.id]; old != nil {
			from = old.subs // taken over while still live
		}
		for k, f := range from {
			ss.subs[k] = f
		}
	} else {
		delete(c.kept, ss.id)
	}
	c.byID[ss.id] = ss
	if _, ok := ss.subs[iotmqtt.SubMethods]; ok {
		c.wakeLocked()
	}
}

func (c *connections) wakeLocked() {
	close(c.online)
	c.online = make(chan struct{})
}

// remove ends ss for reason, failing the method calls waiting on it. It reports whether ss was the
// device's live connection (false when a newer connection took over).
func (c *connections) remove(ss *session, reason string, keep bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for rid, pc := range c.pending {
		if pc.ss == ss {
			pc.ch <- methodAnswer{gone: true}
			delete(c.pending, rid)
		}
	}
	current := c.byID[ss.id] == ss
	if current {
		delete(c.byID, ss.id)
		if keep {
			c.kept[ss.id] = ss.subs
		} else {
			delete(c.kept, ss.id)
		}
	}
	c.last[ss.id] = LastConnection{Transport: ss.transport, Since: ss.since, Until: time.Now().UTC(), DisconnectReason: reason}
	return current
}

// revoke closes id's live connection for reason, without waiting for it to end. Called with the
// store's lock held.
func (c *connections) revoke(id, reason string) {
	c.mu.Lock()
	ss := c.byID[id]
	c.mu.Unlock()
	if ss != nil && ss.stop != nil {
		go ss.stop(errors.New(reason))
	}
}

// subscribe records a granted subscription of ss.
func (c *connections) subscribe(ss *session, kind iotmqtt.Subscription, filter string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ss.subs[kind] = filter
	if kind == iotmqtt.SubMethods && c.byID[ss.id] == ss {
		c.wakeLocked()
	}
}

// unsubscribe drops a subscription of ss by its filter.
func (c *connections) unsubscribe(ss *session, filter string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, f := range ss.subs {
		if f == filter {
			delete(ss.subs, k)
		}
	}
}

// subscriptionCount is how many kinds of subscription ss would hold with kind added (a filter
// subscribed twice, as the Node SDK does for each method handler, counts once).
func (c *connections) subscriptionCount(ss *session, kind iotmqtt.Subscription) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(ss.subs)
	if _, ok := ss.subs[kind]; !ok {
		n++
	}
	return n
}

// note records an error of ss for /_emulator/connections.
func (c *connections) note(ss *session, msg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ss.lastError = msg
}

// countTelemetry counts one device-to-cloud message of ss.
func (c *connections) countTelemetry(ss *session) {
	c.telemetry.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	ss.telemetry++
}

// pushDesired queues a desired patch for id's connection when it subscribed to desired patches; a
// device away gets nothing, as on the hub. Called with the store's lock held.
func (c *connections) pushDesired(id string, patch map[string]any, ver int64) {
	c.mu.Lock()
	ss := c.byID[id]
	subscribed := false
	if ss != nil {
		_, subscribed = ss.subs[iotmqtt.SubDesired]
	}
	c.mu.Unlock()
	if !subscribed {
		return
	}
	body, err := json.Marshal(withVersion(patch, ver))
	if err != nil {
		return // the patch was validated as JSON values; this cannot happen
	}
	if !ss.send(iotmqtt.DesiredPatch(ver), body) {
		c.dropped(ss)
	}
}

func (c *connections) dropped(ss *session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ss.dropped++
}

// methodTarget is id's live connection when it subscribed to methods, and a channel closed when
// that may have changed.
func (c *connections) methodTarget(id string) (*session, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ss := c.byID[id]
	if ss != nil {
		if _, ok := ss.subs[iotmqtt.SubMethods]; ok {
			return ss, c.online
		}
	}
	return nil, c.online
}

// expect registers a method call on ss and returns its request id and the channel its answer comes on.
func (c *connections) expect(ss *session) (string, chan methodAnswer) {
	rid := strconv.FormatUint(c.nextRID.Add(1), 10)
	ch := make(chan methodAnswer, 1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byID[ss.id] != ss {
		ch <- methodAnswer{gone: true}
		return rid, ch
	}
	c.pending[rid] = &pendingCall{ss: ss, ch: ch}
	return rid, ch
}

// forget drops a method call that ended without an answer.
func (c *connections) forget(rid string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.pending, rid)
}

// answer delivers ss's answer to the call rid; an answer to no call of this connection, or whose body
// is not JSON, is noted and dropped (the caller then gets 504 at its deadline).
func (c *connections) answer(ss *session, rid string, status int, body []byte) {
	if len(body) == 0 {
		body = []byte("null")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	pc := c.pending[rid]
	switch {
	case pc == nil || pc.ss != ss:
		ss.lastError = "method answer $rid=" + rid + " matches no pending call"
		return
	case len(body) > 128*1024:
		ss.lastError = "method answer $rid=" + rid + " is larger than 128 KB"
		return
	case !json.Valid(body):
		ss.lastError = "method answer $rid=" + rid + " is not JSON"
		return
	}
	delete(c.pending, rid)
	pc.ch <- methodAnswer{status: status, payload: json.RawMessage(body)}
}

// invokeExternal calls a direct method on id's real client: it waits connectTimeoutInSeconds for a
// connection subscribed to methods (404103 DeviceNotOnline), publishes the request, and waits
// responseTimeoutInSeconds for the answer (504101 GatewayTimeout). A connection that ends first fails
// the call at once with 404103.
func (s *Server) invokeExternal(ctx context.Context, id string, m *hubapi.CloudToDeviceMethod) (*hubapi.MethodResult, error) {
	c := s.conns
	connectBy := time.NewTimer(time.Duration(m.ConnectTimeoutInSeconds) * time.Second)
	defer connectBy.Stop()
	var ss *session
	for {
		var changed <-chan struct{}
		if ss, changed = c.methodTarget(id); ss != nil {
			break
		}
		select {
		case <-changed:
			continue
		case <-connectBy.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.done:
			return nil, shutdownErr(ctx)
		}
		return nil, hubErr(hubapi.CodeDeviceNotOnline, "Timed out waiting for device to connect.")
	}
	rid, ch := c.expect(ss)
	payload := []byte(m.Payload)
	if len(payload) == 0 {
		payload = []byte("null")
	}
	if !ss.send(iotmqtt.MethodRequest(m.MethodName, rid), payload) {
		c.dropped(ss)
	}
	respondBy := time.NewTimer(time.Duration(m.ResponseTimeoutInSeconds) * time.Second)
	defer respondBy.Stop()
	select {
	case a := <-ch:
		if a.gone {
			return nil, hubErr(hubapi.CodeDeviceNotOnline, "Device unavailable")
		}
		return &hubapi.MethodResult{Status: int32(a.status), Payload: a.payload}, nil
	case <-respondBy.C:
		c.forget(rid)
		return nil, hubErr(hubapi.CodeGatewayTimeout, "Timed out waiting for the response from device.")
	case <-ctx.Done():
		c.forget(rid)
		return nil, ctx.Err()
	case <-s.done:
		c.forget(rid)
		return nil, shutdownErr(ctx)
	}
}

// shutdownErr is how a call to a real device ends when the emulator closes. A job's context is
// cancelled on close too, and then the call ends with the context's error, so that its row stays
// pending and a job resumed from the data file calls the device again (methods to real devices are at
// least once across a restart); a REST caller gets 404103.
func shutdownErr(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Second):
		return hubErr(hubapi.CodeDeviceNotOnline, "The emulator is shutting down.")
	}
}

// Connection is one live device connection, as /_emulator/connections lists it.
type Connection struct {
	DeviceID       string          `json:"deviceId"`
	ModuleID       string          `json:"moduleId,omitempty"`
	Transport      string          `json:"transport"`
	Since          time.Time       `json:"since"`
	APIVersion     string          `json:"apiVersion,omitempty"`
	ClientType     string          `json:"deviceClientType,omitempty"`
	Subscriptions  []string        `json:"subscriptions"`
	Telemetry      int64           `json:"telemetryMessages"`
	Dropped        int64           `json:"droppedMessages,omitempty"`
	LastError      string          `json:"lastError,omitempty"`
	LastDisconnect *LastConnection `json:"lastDisconnect,omitempty"`
}

// Connections lists the live device and module connections in device id order (a device before its
// modules), and by key (a device id, or {deviceId}/{moduleId}) how the last connection of each
// identity that has none now ended.
func (s *Server) Connections() (live []Connection, ended map[string]LastConnection) {
	c := s.conns
	c.mu.Lock()
	defer c.mu.Unlock()
	live = make([]Connection, 0, len(c.byID))
	for id, ss := range c.byID {
		conn := Connection{DeviceID: ss.device, ModuleID: ss.module, Transport: ss.transport, Since: ss.since, APIVersion: ss.apiVersion,
			ClientType: ss.clientType, Subscriptions: []string{}, Telemetry: ss.telemetry, Dropped: ss.dropped, LastError: ss.lastError}
		for _, f := range ss.subs {
			conn.Subscriptions = append(conn.Subscriptions, f)
		}
		sort.Strings(conn.Subscriptions)
		if l, ok := c.last[id]; ok {
			conn.LastDisconnect = &l
		}
		live = append(live, conn)
	}
	sort.Slice(live, func(i, j int) bool {
		if live[i].DeviceID != live[j].DeviceID {
			return live[i].DeviceID < live[j].DeviceID
		}
		return live[i].ModuleID < live[j].ModuleID
	})
	ended = map[string]LastConnection{}
	for id, l := range c.last {
		if _, ok := c.byID[id]; !ok {
			ended[id] = l
		}
	}
	return live, ended
}
