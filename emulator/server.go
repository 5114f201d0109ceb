package emulator

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iot-rollout/rollout/hubapi"
)

// Options configure an emulator. The zero value serves an empty hub on the unlimited tier over plain
// HTTP on a free loopback port, with the development policy.
type Options struct {
	Fleet      *Fleet        // nil: an empty hub
	Tier       string        // "F1", "S1", "S2", "S3" or "unlimited" (default)
	Units      int           // default 1
	QueryLag   time.Duration // twin queries see twins as they were this long ago
	Faults     Faults        // seeded 429/500/503 share, slow responses, dropped connections
	Seed       int64         // decides which devices are offline or failing, and the fault sequence
	DataFile   string        // keep twins and jobs across restarts: loaded on Start when it exists (the fleet then only gives its groups' behaviour), written on Close
	PolicyName string        // default DevelopmentPolicyName
	PolicyKey  string        // base64; default DevelopmentPolicyKey
	Addr       string        // default "127.0.0.1:0"
	TLS        bool          // serve HTTPS with a generated CA; CertDir holds ca.pem
	CertDir    string        // where the CA lives (default: a temporary directory removed on Close)
	// HostName is the host the connection string names (default: "localhost" when serving TLS on port 443,
	// for the Node SDK, else the listening address).
	HostName string
	// MQTTAddr, when set, is where devices connect: MQTT 3.1.1 over TLS with the emulator's generated
	// certificate (even when the REST side is plain HTTP), as real device code connects to IoT Hub on
	// 8883; it also turns on MQTT over WebSockets at /$iothub/websocket on the REST listener. "" (the
	// default, for tests and `apply --emulate`) serves no device side; "127.0.0.1:0" a free port.
	MQTTAddr string
	// ConfigurationInterval is how often automatic device configurations are run again after the run
	// that follows each create or update: their content is written to the twins their target
	// conditions select then. Default 5 minutes, the hub's interval.
	ConfigurationInterval time.Duration
	// Log, when set, receives one line per IoT Hub request: method, path, status, error code and
	// duration. Tokens and bodies are never logged.
	Log io.Writer
}

// Server is a running emulator.
type Server struct {
	opts    Options
	quotas  hubapi.Quotas
	store   *store
	jobs    *jobStore
	conv    *converger
	limits  *limits
	faults  *faultInjector
	auth    *authenticator
	cursors *cursorStore
	conns   *connections
	mqtt    *deviceMQTT // nil without Options.MQTTAddr
	// newConns holds the HTTP connections that have not sent a request yet (see trackConn).
	newConns sync.Map

	ln       net.Listener
	http     *http.Server
	url      string
	host     string
	caFile   string
	tmpDir   string
	done     chan struct{}
	wg       sync.WaitGroup
	closeMu  sync.Mutex
	closed   bool
	closeErr error

	requests   atomic.Int64
	faultCount atomic.Int64
	errors     errorCounts
	log        requestLog
}

// maxBody bounds request bodies: a twin is at most 8 KB of tags and 32 KB of desired properties and a
// method payload 128 KB, so a megabyte leaves room for JSON overhead and whole-twin PATCHes.
const maxBody = 1 << 20

// Start loads the fleet (or the data file, when it exists), listens and serves until Close. It returns
// once the server accepts connections. ctx bounds nothing after Start returns: the server runs until
// Close, which callers must call.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	opts, q, key, err := withDefaults(opts)
	if err != nil {
		return nil, err
	}
	s := newServer(opts, q)
	if err := s.loadState(); err != nil {
		return nil, err
	}
	ln, err := s.listen(key)
	if err != nil {
		return nil, err
	}
	s.serve(ln)
	return s, nil
}

// withDefaults fills in the options left zero and checks the others; it returns the tier's quotas and
// the decoded policy key.
func withDefaults(opts Options) (Options, hubapi.Quotas, []byte, error) {
	if opts.Tier == "" {
		opts.Tier = "unlimited"
	}
	if opts.Units == 0 {
		opts.Units = 1
	}
	q, err := hubapi.TierQuotas(opts.Tier, opts.Units)
	if err != nil {
		return opts, q, nil, fmt.Errorf("emulator: %w", err)
	}
	if opts.PolicyName == "" {
		opts.PolicyName = DevelopmentPolicyName
	}
	if opts.PolicyKey == "" {
		opts.PolicyKey = DevelopmentPolicyKey
	}
	key, err := base64.StdEncoding.DecodeString(opts.PolicyKey)
	if err != nil || len(key) == 0 {
		return opts, q, nil, errors.New("emulator: the policy key is not base64")
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.QueryLag < 0 {
		return opts, q, nil, errors.New("emulator: the query lag must not be negative")
	}
	if opts.ConfigurationInterval < 0 {
		return opts, q, nil, errors.New("emulator: the configuration interval must not be negative")
	}
	if opts.ConfigurationInterval == 0 {
		opts.ConfigurationInterval = 5 * time.Minute
	}
	return opts, q, key, nil
}

// newServer builds a server's stores, empty, for options with their defaults filled in.
func newServer(opts Options, q hubapi.Quotas) *Server {
	s := &Server{opts: opts, quotas: q, jobs: newJobStore(), limits: newLimits(q),
		faults: newFaultInjector(opts.Faults, opts.Seed), cursors: newCursorStore(),
		done: make(chan struct{}), log: requestLog{w: opts.Log}}
	defaults := DefaultBehavior
	if opts.Fleet != nil {
		defaults = opts.Fleet.Defaults
	}
	s.store = newStore(opts.Seed, defaults)
	if opts.QueryLag > 0 {
		s.store.lag = &lagLog{lag: opts.QueryLag}
	}
	s.conv = newConverger(s.store)
	s.store.onDesired = s.conv.schedule
	s.conns = newConnections()
	s.store.pushDesired = s.conns.pushDesired
	s.store.revoke = s.conns.revoke
	return s
}

// loadState fills the stores from the data file when it exists, else from the fleet.
func (s *Server) loadState() error {
	loaded := false
	if s.opts.DataFile != "" {
		var err error
		if loaded, err = s.loadData(s.opts.DataFile); err != nil {
			return err
		}
	}
	if !loaded {
		if err := s.store.load(s.opts.Fleet, time.Now().UnixNano()); err != nil {
			return fmt.Errorf("emulator: fleet: %w", err)
		}
	}
	s.store.runConfigs(time.Now().UnixNano())
	return nil
}

// listen opens the listening socket, works out the host name the connection string names and the
// hosts a token may be signed for, and sets up TLS when asked. It returns the listener to serve on.
func (s *Server) listen(key []byte) (net.Listener, error) {
	opts := s.opts
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("emulator: %w", err)
	}
	s.ln = ln
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	lhost, _, _ := net.SplitHostPort(opts.Addr)
	if lhost == "" || lhost == "0.0.0.0" || lhost == "::" {
		lhost = "127.0.0.1"
	}
	s.host = opts.HostName
	if s.host == "" {
		if opts.TLS && port == "443" {
			s.host = "localhost"
		} else {
			s.host = net.JoinHostPort(lhost, port)
		}
	}
	hosts := map[string]bool{"localhost": true, "127.0.0.1": true, "::1": true, strings.ToLower(lhost): true}
	if h, _, err := net.SplitHostPort(s.host); err == nil {
		hosts[strings.ToLower(h)] = true
	} else {
		hosts[strings.ToLower(s.host)] = true
	}
	s.auth = &authenticator{policy: opts.PolicyName, key: key, hosts: hosts, port: port, now: time.Now,
		ports: map[string]bool{"8883": true}}
	var mqttLn net.Listener
	if opts.MQTTAddr != "" {
		if mqttLn, err = net.Listen("tcp", opts.MQTTAddr); err != nil {
			ln.Close()
			return nil, fmt.Errorf("emulator: mqtt: %w", err)
		}
		_, mport, _ := net.SplitHostPort(mqttLn.Addr().String())
		s.auth.ports[mport] = true
	}

	s.http = &http.Server{Handler: s, ReadHeaderTimeout: 30 * time.Second,
		// HTTP/1.1 only: dropped-connection faults hijack the connection, which HTTP/2 cannot.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ConnState:    s.trackConn,
	}
	scheme := "http"
	if opts.TLS || mqttLn != nil {
		cfg, err := s.serverTLS(lhost, hostOnly(opts.MQTTAddr))
		if err != nil {
			ln.Close()
			if mqttLn != nil {
				mqttLn.Close()
			}
			return nil, err
		}
		if opts.TLS {
			s.http.TLSConfig = cfg
			ln = tls.NewListener(ln, cfg)
			scheme = "https"
		}
		if mqttLn != nil {
			if err := s.startMQTT(mqttLn, cfg); err != nil {
				ln.Close()
				mqttLn.Close()
				return nil, fmt.Errorf("emulator: mqtt: %w", err)
			}
		}
	}
	s.url = scheme + "://" + net.JoinHostPort(lhost, port)
	return ln, nil
}

// serverTLS is the TLS configuration of the HTTPS and MQTT listeners: a certificate for the listening
// hosts and the connection string's host, signed by the CA in CertDir (or a temporary directory).
func (s *Server) serverTLS(hosts ...string) (*tls.Config, error) {
	dir := s.opts.CertDir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "rollout-emulator-ca-"); err != nil {
			return nil, err
		}
		s.tmpDir = dir
	}
	var names []string
	for _, h := range append(hosts, strings.Split(s.host, ":")[0]) {
		if h != "" && h != "0.0.0.0" && h != "::" {
			names = append(names, h)
		}
	}
	cfg, caFile, err := serverTLS(dir, names)
	if err != nil {
		if s.tmpDir != "" {
			os.RemoveAll(s.tmpDir)
		}
		return nil, err
	}
	s.caFile = caFile
	return cfg, nil
}

// serve starts the simulated devices, the cursor expiry and the runners of unfinished jobs, and serves
// ln until Close.
func (s *Server) serve(ln net.Listener) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.conv.run(s.done)
	}()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.cursors.expireLoop(s.done)
	}()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(s.opts.ConfigurationInterval)
		defer t.Stop()
		for {
			select {
			case <-s.done:
				return
			case <-t.C:
				s.store.runConfigs(time.Now().UnixNano())
			}
		}
	}()
	s.resumeJobs()
	s.scheduleOnline()
	go func() {
		// Serve returns http.ErrServerClosed after Close; there is no one else to tell.
		_ = s.http.Serve(ln)
	}()
}

// ConnectionString is a service connection string for the emulator's policy.
func (s *Server) ConnectionString() string {
	return "HostName=" + s.host + ";SharedAccessKeyName=" + s.opts.PolicyName + ";SharedAccessKey=" + s.opts.PolicyKey
}

// URL is the emulator's base URL (http:// or https://127.0.0.1:PORT).
func (s *Server) URL() string { return s.url }

// MQTTAddr is the address devices connect to over MQTT (host:port); "" without Options.MQTTAddr.
func (s *Server) MQTTAddr() string {
	if s.mqtt == nil {
		return ""
	}
	return s.mqtt.ln.Addr().String()
}

// CAFile is the PEM file of the CA that signed the server certificate; "" without TLS or MQTT.
func (s *Server) CAFile() string { return s.caFile }

// Quotas are the emulated tier's quotas.
func (s *Server) Quotas() hubapi.Quotas { return s.quotas }

// Close stops serving, stops the job runners and the simulated devices, and writes the data file (when
// configured) atomically. It is safe to call more than once.
func (s *Server) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return s.closeErr
	}
	s.closed = true
	close(s.done)
	s.mqtt.close()
	// A client may open a connection it never sends a request on (a dial it no longer needed);
	// Shutdown would wait five seconds for it to speak. Nothing is lost by closing those now.
	s.newConns.Range(func(c, _ any) bool {
		_ = c.(net.Conn).Close()
		return true
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.http.Shutdown(ctx)
	if err != nil {
		_ = s.http.Close()
		err = nil
	}
	s.wg.Wait()
	if s.opts.DataFile != "" {
		if werr := s.saveData(s.opts.DataFile); werr != nil {
			err = werr
		}
	}
	if s.tmpDir != "" {
		_ = os.RemoveAll(s.tmpDir)
	}
	s.closeErr = err
	return err
}

// trackConn keeps the connections that have not sent a request yet, for Close.
func (s *Server) trackConn(c net.Conn, state http.ConnState) {
	if state == http.StateNew {
		s.newConns.Store(c, true)
	} else {
		s.newConns.Delete(c)
	}
}
