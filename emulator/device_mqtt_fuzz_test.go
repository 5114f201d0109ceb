package emulator

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// FuzzDevicePackets sends arbitrary bytes after a valid CONNECT and checks that the emulator neither
// panics nor stops serving: whatever a device sends gets the hub's answer or a closed connection.
func FuzzDevicePackets(f *testing.F) {
	s, cfg := fuzzHub(f)
	host := s.MQTTAddr()

	connect := func() []byte {
		cp := packets.NewControlPacket(packets.Connect).(*packets.ConnectPacket)
		cp.ProtocolName, cp.ProtocolVersion = "MQTT", 4
		cp.ClientIdentifier = "d1"
		cp.UsernameFlag, cp.Username = true, host+"/d1/?api-version=2021-04-12"
		cp.PasswordFlag = true
		cp.Password = []byte(signToken(host+"/devices/d1", s.opts.PolicyName, s.auth.key, time.Now().Add(time.Hour)))
		cp.Keepalive = 30
		var b bytes.Buffer
		_ = cp.Write(&b)
		return b.Bytes()
	}()
	encode := func(p packets.ControlPacket) []byte {
		var b bytes.Buffer
		_ = p.Write(&b)
		return b.Bytes()
	}
	pub := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
	pub.TopicName, pub.Payload = "$iothub/twin/PATCH/properties/reported/?$rid=1", []byte(`{"a":`)
	f.Add(encode(pub))
	pub.TopicName, pub.Qos, pub.MessageID = "$iothub/methods/res/200/?$rid=1", 1, 7
	f.Add(encode(pub))
	pub.Qos = 2
	f.Add(encode(pub))
	sub := packets.NewControlPacket(packets.Subscribe).(*packets.SubscribePacket)
	sub.Topics, sub.Qoss, sub.MessageID = []string{"$iothub/twin/res/#", "#"}, []byte{0, 2}, 3
	f.Add(encode(sub))
	f.Add([]byte{0x10, 0x00})             // a second CONNECT
	f.Add([]byte{0x30, 0xff, 0xff, 0x7f}) // a publish longer than it says
	f.Add([]byte{0xc0, 0x00, 0xe0, 0x00}) // PINGREQ, DISCONNECT

	f.Fuzz(func(t *testing.T, data []byte) {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second, Deadline: time.Now().Add(3 * time.Second)}, "tcp", host, cfg)
		if err != nil {
			buf := make([]byte, 1<<20)
			t.Fatalf("the emulator stopped accepting devices: %v\n%s", err, buf[:runtime.Stack(buf, true)])
		}
		defer conn.Close()
		_ = conn.SetWriteDeadline(time.Now().Add(3 * time.Second))
		if _, err := conn.Write(connect); err != nil {
			t.Fatal(err)
		}
		ack := make([]byte, 4)
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Read(ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
			t.Fatalf("CONNACK % x, %v", ack, err)
		}
		if _, err := conn.Write(data); err != nil && len(data) > 0 {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				buf := make([]byte, 1<<20)
				t.Fatalf("the emulator stopped reading: %v\n%s", err, buf[:runtime.Stack(buf, true)])
			}
		}
		_ = conn.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		buf := make([]byte, 4096)
		for {
			if _, err := conn.Read(buf); err != nil {
				break
			}
		}
	})
}

// FuzzDeviceConnect sends arbitrary bytes as a connection's first packet and checks that the
// emulator accepts only a CONNECT from d1 carrying d1's token, answers or closes everything else
// within its CONNECT wait (never leaving a connection hanging), and keeps serving devices.
func FuzzDeviceConnect(f *testing.F) {
	defer func(d time.Duration) { mqttConnectWait = d }(mqttConnectWait)
	mqttConnectWait = 500 * time.Millisecond
	s, cfg := fuzzHub(f)
	host := s.MQTTAddr()
	token := signToken(host+"/devices/d1", s.opts.PolicyName, s.auth.key, time.Now().Add(time.Hour))
	connect := func(edit func(*packets.ConnectPacket)) []byte {
		cp := packets.NewControlPacket(packets.Connect).(*packets.ConnectPacket)
		cp.ProtocolName, cp.ProtocolVersion, cp.ClientIdentifier = "MQTT", 4, "d1"
		cp.UsernameFlag, cp.Username = true, host+"/d1/?api-version=2021-04-12"
		cp.PasswordFlag, cp.Password = true, []byte(token)
		cp.Keepalive = 30
		edit(cp)
		var b bytes.Buffer
		_ = cp.Write(&b)
		return b.Bytes()
	}
	f.Add(connect(func(*packets.ConnectPacket) {}))
	f.Add(connect(func(cp *packets.ConnectPacket) { cp.UsernameFlag, cp.Username = false, "" }))
	f.Add(connect(func(cp *packets.ConnectPacket) { cp.ClientIdentifier = "" }))
	f.Add(connect(func(cp *packets.ConnectPacket) { cp.WillFlag, cp.WillQos, cp.WillTopic = true, 3, "w" }))
	f.Add(connect(func(cp *packets.ConnectPacket) { cp.ReservedBit = 1 }))
	f.Add(connect(func(cp *packets.ConnectPacket) { cp.ProtocolName = "MQIsdp" }))
	f.Add([]byte{0x10, 0x0c, 0x00, 0x04, 'M', 'Q'})         // truncated
	f.Add([]byte{0x10, 0xff, 0xff, 0xff, 0x7f})             // 256 MB promised
	f.Add([]byte{0x30, 0x03, 0x00, 0x01, 'a'})              // a publish before CONNECT
	f.Add([]byte{0x10, 0x02, 0x00, 0x00, 0x10, 0x00, 0x00}) // two CONNECTs

	f.Fuzz(func(t *testing.T, data []byte) {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second, Deadline: time.Now().Add(3 * time.Second)}, "tcp", host, cfg)
		if err != nil {
			t.Fatalf("the emulator stopped accepting devices: %v", err)
		}
		defer conn.Close()
		_ = conn.SetWriteDeadline(time.Now().Add(3 * time.Second))
		_, _ = conn.Write(data)
		_ = conn.SetReadDeadline(time.Now().Add(mqttConnectWait + 3*time.Second))
		ack := make([]byte, 4)
		_, err = io.ReadFull(conn, ack)
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			t.Fatalf("% x: neither answered nor closed after the CONNECT wait", data)
		case err != nil, ack[0] != 0x20 || ack[3] != 0:
			return // closed, or refused
		}
		p, err := packets.ReadPacket(bytes.NewReader(data))
		cp, ok := p.(*packets.ConnectPacket)
		if err != nil || !ok || cp.ClientIdentifier != "d1" || string(cp.Password) != token {
			t.Fatalf("% x: accepted (CONNACK 0) without d1's CONNECT and token", data)
		}
	})
}

// fuzzHub serves one device, d1, over MQTT until f ends, and returns the TLS settings that trust it.
func fuzzHub(f *testing.F) (*Server, *tls.Config) {
	f.Helper()
	fleet, err := ParseFleet("f.yaml", []byte("devices:\n  - {deviceId: d1}\n"))
	if err != nil {
		f.Fatal(err)
	}
	s, err := Start(context.Background(), Options{Fleet: fleet, MQTTAddr: "127.0.0.1:0"})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	pem, err := os.ReadFile(s.CAFile())
	if err != nil {
		f.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return s, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
}
