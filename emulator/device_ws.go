package emulator

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/gorilla/websocket"
)

// deviceWebSocketPath is where devices connect over MQTT over WebSockets, on the HTTPS listener, as
// on IoT Hub (port 443 there).
const deviceWebSocketPath = "/$iothub/websocket"

// serveDeviceWebSocket upgrades a device's GET /$iothub/websocket that asks for the mqtt subprotocol
// (in any case: the C SDK sends "MQTT", the Node SDK "mqtt", and each wants its own spelling echoed)
// and serves MQTT over it. Anything else on that path is 400, as on the hub; without the device side
// (Options.MQTTAddr) it is 404.
func (s *Server) serveDeviceWebSocket(w http.ResponseWriter, r *http.Request) {
	if s.mqtt == nil {
		http.Error(w, "the emulator's device side is off: start it with an MQTT address (--mqtt-listen)", http.StatusNotFound)
		return
	}
	proto := ""
	for _, p := range websocket.Subprotocols(r) {
		if strings.EqualFold(p, "mqtt") {
			proto = p
			break
		}
	}
	if !websocket.IsWebSocketUpgrade(r) || proto == "" {
		http.Error(w, "a WebSocket upgrade with subprotocol mqtt is required", http.StatusBadRequest)
		return
	}
	up := websocket.Upgrader{Subprotocols: []string{proto}, CheckOrigin: func(*http.Request) bool { return true }}
	c, err := up.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader answered the client
	}
	if !s.mqtt.hold() {
		c.Close()
		return
	}
	defer s.mqtt.wg.Done()
	s.mqtt.serveConn("wss", &wsConn{Conn: c.NetConn(), c: c})
}

// wsConn is a WebSocket as the byte stream MQTT runs over: each binary message carries some of it.
type wsConn struct {
	net.Conn
	c *websocket.Conn
	r io.Reader // the message being read; nil between messages
}

var errTextFrame = errors.New("a text WebSocket message: MQTT is sent in binary messages")

func (ws *wsConn) Read(p []byte) (int, error) {
	for {
		if ws.r == nil {
			op, r, err := ws.c.NextReader()
			if err != nil {
				return 0, err
			}
			if op != websocket.BinaryMessage {
				return 0, errTextFrame
			}
			ws.r = r
		}
		n, err := ws.r.Read(p)
		if errors.Is(err, io.EOF) {
			ws.r = nil
			err = nil
			if n == 0 {
				continue
			}
		}
		return n, err
	}
}

func (ws *wsConn) Write(p []byte) (int, error) {
	if err := ws.c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}
