package emulator

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// TestMQTTIncompleteConnect checks that a client that never completes its CONNECT is closed after
// mqttConnectWait rather than held forever.
func TestMQTTIncompleteConnect(t *testing.T) {
	defer func(d time.Duration) { mqttConnectWait = d }(mqttConnectWait)
	mqttConnectWait = 300 * time.Millisecond
	s, err := Start(context.Background(), Options{MQTTAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pem, err := os.ReadFile(s.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	for name, raw := range map[string][]byte{
		"nothing":   nil,
		"truncated": {0x10, 0x0c, 0x00, 0x04, 'M', 'Q'},
	} {
		t.Run(name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", s.MQTTAddr(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_, _ = conn.Write(raw)
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = conn.Read(make([]byte, 8))
			var ne net.Error
			if err == nil || errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("read %v: the connection was neither closed nor refused", err)
			}
		})
	}
}
