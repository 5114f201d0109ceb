// Command gateway is a small device program, written as firmware would be, for rehearsing a rollout
// with real device code attached: it connects to an IoT Hub (or the emulator) over MQTT 3.1.1 with
// TLS as the device its connection string names, signing its own SAS token with the key in it, and
// reports its configuration profile. The applyProfile direct method ({"profile": "B"}) and the
// desired property profile switch it: a profile it supports is applied, reported back and answered
// 200 with {"profile": new, "previous": old}; any other is answered 400 and left as it was.
//
//	go run ./examples/gateway \
//	  --connection-string 'HostName=127.0.0.1;DeviceId=gwbench-0000;SharedAccessKey=...' \
//	  --ca-file .rollout/emulator/ca.pem
//
// It runs until interrupted, reconnecting with a fresh token when the connection drops. Each method
// and profile change is logged on standard output.
package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// apiVersion is the device API version the program speaks.
const apiVersion = "2021-04-12"

// tokenLifetime is how long each SAS token the program signs is valid; a reconnect signs a new one.
const tokenLifetime = time.Hour

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}

// config is what the program was asked to do.
type config struct {
	host, deviceID string
	key            []byte // the device's symmetric key, decoded
	broker         string // host:port of the MQTT listener
	ca             *x509.CertPool
	profile        string          // the profile it starts with
	supports       map[string]bool // the profiles it can apply
}

// parse turns the command line into a config, or says what is wrong with it.
func parse(args []string) (*config, error) {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	cs := fs.String("connection-string", os.Getenv("DEVICE_CONNECTION_STRING"), "HostName=...;DeviceId=...;SharedAccessKey=... (default $DEVICE_CONNECTION_STRING)")
	caFile := fs.String("ca-file", "", "PEM file of the CA that signed the hub's certificate (default: the system's)")
	broker := fs.String("mqtt", "", "host:port of the MQTT listener (default: the connection string's host on 8883)")
	profile := fs.String("profile", "A", "the profile the device starts with")
	supports := fs.String("supports", "A,B", "comma-separated profiles the device can apply")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	c := &config{broker: *broker, profile: *profile, supports: map[string]bool{}}
	for _, p := range strings.Split(*supports, ",") {
		c.supports[strings.TrimSpace(p)] = true
	}
	if err := c.readConnectionString(*cs); err != nil {
		return nil, err
	}
	if c.broker == "" {
		h, _, err := net.SplitHostPort(c.host)
		if err != nil {
			h = c.host
		}
		c.broker = net.JoinHostPort(h, "8883")
	}
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			return nil, err
		}
		c.ca = x509.NewCertPool()
		if !c.ca.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", *caFile)
		}
	}
	return c, nil
}

// readConnectionString takes the host, device id and key from a device connection string.
func (c *config) readConnectionString(s string) error {
	if s == "" {
		return errors.New("no connection string: give --connection-string or set DEVICE_CONNECTION_STRING")
	}
	var key string
	for _, part := range strings.Split(s, ";") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "HostName":
			c.host = v
		case "DeviceId":
			c.deviceID = v
		case "SharedAccessKey":
			key = part[len(k)+1:] // base64 may end in '='
		}
	}
	if c.host == "" || c.deviceID == "" || key == "" {
		return errors.New("the connection string needs HostName, DeviceId and SharedAccessKey")
	}
	var err error
	if c.key, err = base64.StdEncoding.DecodeString(key); err != nil {
		return fmt.Errorf("SharedAccessKey is not base64: %v", err)
	}
	return nil
}

// token signs a SAS token for the device, valid until expiry, as the device SDKs do.
func (c *config) token(expiry time.Time) string {
	sr := url.QueryEscape(c.host + "/devices/" + c.deviceID)
	se := strconv.FormatInt(expiry.Unix(), 10)
	mac := hmac.New(sha256.New, c.key)
	mac.Write([]byte(sr + "\n" + se))
	sig := url.QueryEscape(base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	return "SharedAccessSignature sr=" + sr + "&sig=" + sig + "&se=" + se
}

// run connects and serves the device until ctx ends.
func run(ctx context.Context, args []string, out io.Writer) error {
	c, err := parse(args)
	if err != nil {
		return err
	}
	g := &gateway{cfg: c, out: out, profile: c.profile}
	serverName, _, err := net.SplitHostPort(c.broker)
	if err != nil {
		return fmt.Errorf("--mqtt %q: %v", c.broker, err)
	}
	opts := paho.NewClientOptions().AddBroker("ssl://" + c.broker).
		SetClientID(c.deviceID).SetProtocolVersion(4).SetCleanSession(false).
		SetTLSConfig(&tls.Config{RootCAs: c.ca, ServerName: serverName, MinVersion: tls.VersionTLS12}).
		SetKeepAlive(60 * time.Second).SetAutoReconnect(true).SetConnectRetry(true).
		SetCredentialsProvider(func() (string, string) {
			return c.host + "/" + c.deviceID + "/?api-version=" + apiVersion, c.token(time.Now().Add(tokenLifetime))
		}).
		SetOnConnectHandler(g.connected).
		SetConnectionLostHandler(func(_ paho.Client, err error) { g.logf("connection lost: %v", err) })
	client := paho.NewClient(opts)
	if t := client.Connect(); !t.WaitTimeout(30*time.Second) || t.Error() != nil {
		return fmt.Errorf("connect to %s: %v", c.broker, t.Error())
	}
	<-ctx.Done()
	client.Disconnect(250)
	return nil
}
