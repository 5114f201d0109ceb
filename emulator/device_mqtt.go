package emulator

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iot-rollout/rollout/emulator/internal/iotmqtt"
	"github.com/iot-rollout/rollout/hubapi"
)

// This file is the only one that knows the MQTT server library: it frames MQTT 3.1.1 for the device
// side and turns each packet into a call on the store or the connection registry (deviceconn.go). The
// library never routes a message: every PUBLISH a device sends is answered here and delivered to no
// other client, since all devices subscribe to the same $iothub/... filters.

// maxDevicePacket bounds a packet from a device: telemetry is at most 256 KB, plus room for the topic
// and its property bag. A larger packet closes the connection.
const maxDevicePacket = 256*1024 + 4096

// mqttConnectWait is how long a new connection has for its TLS handshake and CONNECT; past it, the
// connection is closed, so that a client that never completes one holds nothing. After CONNECT the
// keep-alive (1.5 × the client's) bounds silence instead.
var mqttConnectWait = 30 * time.Second

// deviceMQTT is the device endpoint: the MQTT server and its listener.
type deviceMQTT struct {
	srv  *mqtt.Server
	hook *deviceHook
	ln   net.Listener
	wg   sync.WaitGroup // the accept loop and each connection

	mu     sync.Mutex
	closed bool
}

// hold counts a connection served from elsewhere (a WebSocket) in wg, unless closing; the caller then
// calls wg.Done.
func (m *deviceMQTT) hold() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.wg.Add(1)
	return true
}

// startMQTT serves MQTT over TLS with cfg on ln until closeMQTT.
func (s *Server) startMQTT(ln net.Listener, cfg *tls.Config) error {
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumQos = 1 // a QoS 2 subscription is granted QoS 1, as the hub does
	caps.RetainAvailable = 0
	caps.MaximumPacketSize = maxDevicePacket
	caps.MinimumProtocolVersion = 3
	// The library's own outgoing queue serves broker fan-out, which never happens here (the emulator
	// writes through its own queue); its default of 8,192 slots cost 64 KB a connection.
	caps.MaximumClientWritesPending = 8
	srv := mqtt.New(&mqtt.Options{Capabilities: caps, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	hook := &deviceHook{s: s, srv: srv}
	if err := srv.AddHook(hook, nil); err != nil {
		return err
	}
	if err := srv.Serve(); err != nil {
		return err
	}
	m := &deviceMQTT{srv: srv, hook: hook, ln: tls.NewListener(ln, cfg)}
	s.mqtt = m
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		for {
			conn, err := m.ln.Accept()
			if err != nil {
				return
			}
			m.wg.Add(1)
			go func() {
				defer m.wg.Done()
				m.serveConn("mqtt", conn)
			}()
		}
	}()
	return nil
}

// serveConn serves one device connection until it ends.
func (m *deviceMQTT) serveConn(listener string, conn net.Conn) {
	_ = conn.SetDeadline(time.Now().Add(mqttConnectWait))
	dc := &deviceConn{Conn: conn}
	// The error is the connection's end, recorded by OnDisconnect when the session was established.
	_ = m.srv.EstablishConnection(listener, dc)
	// A connection can end between its session's start and the end of CONNECT (the CONNACK failed to
	// be written) without OnDisconnect; its session ends here.
	if ss := dc.session(); ss != nil {
		m.hook.end(ss, "the connection failed during CONNECT")
	}
}

// deviceConn is a device's network connection, remembering the session it carries.
type deviceConn struct {
	net.Conn
	mu sync.Mutex
	ss *session
}

func (c *deviceConn) session() *session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ss
}

// close stops accepting device connections, closes those open and waits for them to end.
func (m *deviceMQTT) close() {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	_ = m.ln.Close()
	for _, cl := range m.srv.Clients.GetAll() {
		cl.Stop(errEmulatorClosing)
	}
	_ = m.srv.Close()
	m.wg.Wait()
}

var (
	errEmulatorClosing = errors.New("the emulator closed")
	errTokenExpired    = errors.New("the SAS token expired")
)

// deviceHook is the emulator's side of every MQTT packet.
type deviceHook struct {
	mqtt.HookBase
	s        *Server
	srv      *mqtt.Server
	sessions sync.Map // *mqtt.Client → *session
}

func (h *deviceHook) ID() string { return "iothub" }

func (h *deviceHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnSessionEstablish, mqtt.OnSessionEstablished,
		mqtt.OnDisconnect, mqtt.OnPacketRead, mqtt.OnPublish, mqtt.OnSubscribed, mqtt.OnUnsubscribed:
		return true
	}
	return false
}

// maxKeepalive is the longest keep-alive the hub honours: it closes a silent connection after 1.5 ×
// the client's keep-alive but never later than 1767 s, so a client asking for none or more gets this.
const maxKeepalive = 1177

// OnConnect refuses MQTT 5 (and 3.1): IoT Hub speaks 3.1.1, protocol level 4. It caps the keep-alive
// the way the hub does.
func (h *deviceHook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	if pk.ProtocolVersion != 4 {
		_ = h.srv.SendConnack(cl, packets.ErrUnsupportedProtocolVersion, false, nil)
		return packets.ErrUnsupportedProtocolVersion
	}
	if cl.State.Keepalive == 0 || cl.State.Keepalive > maxKeepalive {
		cl.State.Keepalive = maxKeepalive
	}
	return nil
}

// identity checks a CONNECT's username, client id and password; it returns the parsed username and
// the token's expiry. A module connects with the client id {deviceId}/{moduleId} and a token whose sr
// covers {host}/devices/{deviceId}/modules/{moduleId}.
func (h *deviceHook) identity(pk packets.Packet) (iotmqtt.Username, deviceToken, error) {
	u, err := iotmqtt.ParseUsername(string(pk.Connect.Username))
	if err != nil {
		return u, deviceToken{}, err
	}
	key, resource := u.DeviceID, "devices/"+u.DeviceID
	if u.ModuleID != "" {
		key, resource = moduleKey(u.DeviceID, u.ModuleID), resource+"/modules/"+u.ModuleID
	}
	if pk.Connect.ClientIdentifier != key {
		return u, deviceToken{}, errors.New("the client id is not the username's device (or device/module) id")
	}
	p, sk, ok := h.s.store.credentials(key)
	if !ok {
		return u, deviceToken{}, errors.New("unknown or disabled device or module")
	}
	tok, err := h.s.auth.verifyDevice(string(pk.Connect.Password), resource, p, sk)
	return u, tok, err
}

// OnConnectAuthenticate answers CONNACK 5 (not authorized) for a bad, expired or unknown token, an
// unknown or disabled device or module, or a client id that is not the username's identity.
func (h *deviceHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	_, _, err := h.identity(pk)
	return err == nil
}

// OnACLCheck allows what OnPacketRead let through: the topic rules close the connection there.
func (h *deviceHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool { return true }

// OnSessionEstablish makes the connection the device's live one, before its CONNACK, so that a client
// that has its CONNACK finds its device Connected and driven by it from then on.
func (h *deviceHook) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	u, tok, err := h.identity(pk)
	if err != nil {
		cl.Stop(err) // the device was deleted or disabled since CONNECT
		return
	}
	now := time.Now()
	ss := &session{id: cl.ID, device: u.DeviceID, module: u.ModuleID, transport: transportOf(cl), since: now.UTC(), apiVersion: u.APIVersion,
		clientType: u.ClientType, out: make(chan outMessage, maxQueued), closed: make(chan struct{}),
		ready: make(chan struct{}), keep: !cl.Properties.Clean, client: cl, stop: cl.Stop}
	if err := h.s.store.connect(ss.id, u.ModelID, now.UnixNano()); err != nil {
		cl.Stop(err)
		return
	}
	h.s.conns.add(ss, ss.keep)
	h.sessions.Store(cl, ss)
	if dc, ok := cl.Net.Conn.(*deviceConn); ok {
		dc.mu.Lock()
		dc.ss = ss
		dc.mu.Unlock()
	}
	expire := time.AfterFunc(time.Until(tok.expiry), func() { cl.Stop(errTokenExpired) })
	go func() {
		defer expire.Stop()
		select {
		case <-ss.ready:
		case <-ss.closed:
			return
		}
		for {
			select {
			case m := <-ss.out:
				err := cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish},
					TopicName: m.topic, Payload: m.payload})
				if err != nil {
					cl.Stop(err)
				}
			case <-ss.closed:
				return
			}
		}
	}()
}

// OnSessionEstablished lets the session's messages go out, now that its CONNACK is written.
func (h *deviceHook) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	if v, ok := h.sessions.Load(cl); ok {
		close(v.(*session).ready)
	}
}

func transportOf(cl *mqtt.Client) string {
	if cl.Net.Listener == "wss" {
		return "mqtt-ws"
	}
	return "mqtt"
}

// OnDisconnect ends the device's session: Disconnected unless a newer connection took over, with the
// reason kept for /_emulator/connections.
func (h *deviceHook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	v, ok := h.sessions.Load(cl)
	if !ok {
		return
	}
	ss := v.(*session)
	reason := "the client disconnected"
	if err != nil {
		reason = err.Error()
	}
	// Why the emulator stopped the client (an expired token, a refused packet) beats the read error
	// that stopping it caused.
	if cause := cl.StopCause(); cause != nil && !errors.Is(cause, packets.CodeDisconnect) {
		reason = cause.Error()
	}
	if cl.IsTakenOver() {
		reason = "a new connection of the device took over"
	}
	h.end(ss, reason)
}

// end ends a session once, for reason.
func (h *deviceHook) end(ss *session, reason string) {
	ss.endOnce.Do(func() {
		h.sessions.Delete(ss.client)
		close(ss.closed)
		if h.s.conns.remove(ss, reason, ss.keep) {
			h.s.store.disconnect(ss.id, time.Now().UnixNano())
		}
	})
}

// refuse closes the connection for a packet the hub does not accept.
func refuse(format string, args ...any) error {
	return fmt.Errorf("%w: %s", packets.ErrRejectPacket, fmt.Sprintf(format, args...))
}

// OnPacketRead applies the hub's topic rules before the packet is processed: a QoS 2 publish, a
// publish to a topic the hub does not serve, a subscription outside the documented filters or past
// five of them closes the connection.
func (h *deviceHook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	switch pk.FixedHeader.Type {
	case packets.Publish:
		if pk.FixedHeader.Qos > 1 {
			return pk, refuse("QoS 2 publish to %q", pk.TopicName)
		}
		v, ok := h.sessions.Load(cl)
		if !ok {
			return pk, refuse("publish before the session was established")
		}
		ss := v.(*session)
		if p := iotmqtt.ParsePublish(pk.TopicName, ss.device, ss.module); p.Kind == iotmqtt.Unknown {
			return pk, refuse("publish to a topic IoT Hub does not serve: %q", pk.TopicName)
		}
	case packets.Subscribe:
		v, ok := h.sessions.Load(cl)
		if !ok {
			return pk, refuse("subscribe before the session was established")
		}
		ss := v.(*session)
		for _, f := range pk.Filters {
			kind := iotmqtt.ParseFilter(f.Filter, ss.device, ss.module)
			if kind == iotmqtt.SubNone {
				return pk, refuse("subscription to a topic filter IoT Hub does not serve: %q", f.Filter)
			}
			if h.s.conns.subscriptionCount(ss, kind) > iotmqtt.MaxSubscriptions {
				return pk, refuse("more than %d subscriptions", iotmqtt.MaxSubscriptions)
			}
		}
	}
	return pk, nil
}

// OnSubscribed records granted subscriptions just before their SUBACK is written: a client that has
// its SUBACK may at once expect a method call to reach it.
func (h *deviceHook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	v, ok := h.sessions.Load(cl)
	if !ok {
		return
	}
	ss := v.(*session)
	for i, f := range pk.Filters {
		if i < len(codes) && codes[i] >= 0x80 {
			continue
		}
		if kind := iotmqtt.ParseFilter(f.Filter, ss.device, ss.module); kind != iotmqtt.SubNone {
			h.s.conns.subscribe(ss, kind, f.Filter)
		}
	}
}

// OnUnsubscribed drops the filters a client unsubscribed from.
func (h *deviceHook) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	v, ok := h.sessions.Load(cl)
	if !ok {
		return
	}
	for _, f := range pk.Filters {
		h.s.conns.unsubscribe(v.(*session), f.Filter)
	}
}

// OnPublish answers a device's request; the PUBACK (QoS 1) is sent and the message goes to no one.
func (h *deviceHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	v, ok := h.sessions.Load(cl)
	if !ok {
		return pk, packets.ErrRejectPacket
	}
	ss := v.(*session)
	p := iotmqtt.ParsePublish(pk.TopicName, ss.device, ss.module)
	now := time.Now().UnixNano()
	switch p.Kind {
	case iotmqtt.TwinGet:
		h.twinGet(ss, p.RID)
	case iotmqtt.TwinReported:
		h.twinReported(ss, p.RID, pk.Payload, now)
	case iotmqtt.MethodResponse:
		h.s.conns.answer(ss, p.RID, p.Status, pk.Payload)
		h.s.store.touch(ss.id, now)
	case iotmqtt.Telemetry:
		h.s.conns.countTelemetry(ss)
		h.s.store.touch(ss.id, now)
	}
	return pk, packets.CodeSuccessIgnore
}

func (h *deviceHook) twinGet(ss *session, rid string) {
	if err := h.s.limits.allow(QuotaTwinReads); err != nil {
		h.twinError(ss, rid, err)
		return
	}
	doc, err := h.s.store.twinDocument(ss.id)
	if err != nil {
		h.twinError(ss, rid, err)
		return
	}
	h.reply(ss, iotmqtt.TwinResponse(200, rid, 0), doc)
}

func (h *deviceHook) twinReported(ss *session, rid string, body []byte, now int64) {
	if err := h.s.limits.allow(QuotaTwinUpdates); err != nil {
		h.twinError(ss, rid, err)
		return
	}
	var patch map[string]any
	if err := json.Unmarshal(body, &patch); err != nil || patch == nil {
		h.twinError(ss, rid, hubErr(hubapi.CodeArgumentInvalid, "Malformed JSON: the reported patch must be a JSON object"))
		return
	}
	ver, err := h.s.store.reportPatch(ss.id, patch, now)
	if err != nil {
		h.twinError(ss, rid, err)
		return
	}
	h.reply(ss, iotmqtt.TwinResponse(204, rid, ver), nil)
}

// twinError answers a twin request with the error's status and the hub's JSON error body, which the
// SDKs read as an error (an empty body would read as success).
func (h *deviceHook) twinError(ss *session, rid string, err error) {
	var he *hubError
	if !errors.As(err, &he) {
		he = &hubError{code: hubapi.CodeServerError, msg: "internal error: " + err.Error()}
	}
	body, _ := json.Marshal(map[string]any{
		"errorCode": he.code.Number, "trackingId": trackingID(), "message": he.msg, "info": map[string]any{},
		"timestampUtc": time.Now().UTC().Format(time.RFC3339Nano),
	})
	h.s.conns.note(ss, he.code.Name+": "+he.msg)
	h.reply(ss, iotmqtt.TwinResponse(he.httpStatus(), rid, 0), body)
}

func (h *deviceHook) reply(ss *session, topic string, body []byte) {
	ss.answer(topic, body)
}

// hostOnly is a listen address's host, for the certificate.
func hostOnly(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return strings.Trim(addr, "[]")
	}
	return h
}
