package emulator

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
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
	errMu      sync.Mutex
	errCounts  map[string]int64
	logMu      sync.Mutex
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
	if opts.Tier == "" {
		opts.Tier = "unlimited"
	}
	if opts.Units == 0 {
		opts.Units = 1
	}
	q, err := hubapi.TierQuotas(opts.Tier, opts.Units)
	if err != nil {
		return nil, fmt.Errorf("emulator: %w", err)
	}
	if opts.PolicyName == "" {
		opts.PolicyName = DevelopmentPolicyName
	}
	if opts.PolicyKey == "" {
		opts.PolicyKey = DevelopmentPolicyKey
	}
	key, err := base64.StdEncoding.DecodeString(opts.PolicyKey)
	if err != nil || len(key) == 0 {
		return nil, errors.New("emulator: the policy key is not base64")
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.QueryLag < 0 {
		return nil, errors.New("emulator: the query lag must not be negative")
	}
	s := &Server{opts: opts, quotas: q, jobs: newJobStore(), limits: newLimits(q),
		faults: newFaultInjector(opts.Faults, opts.Seed), cursors: newCursorStore(),
		done: make(chan struct{}), errCounts: map[string]int64{}}
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

	loaded := false
	if opts.DataFile != "" {
		if loaded, err = s.loadData(opts.DataFile); err != nil {
			return nil, err
		}
	}
	if !loaded {
		if err := s.store.load(opts.Fleet, time.Now().UnixNano()); err != nil {
			return nil, fmt.Errorf("emulator: fleet: %w", err)
		}
	}

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
	s.auth = &authenticator{policy: opts.PolicyName, key: key, hosts: hosts, port: port, now: time.Now}

	s.http = &http.Server{Handler: s, ReadHeaderTimeout: 30 * time.Second,
		// HTTP/1.1 only: dropped-connection faults hijack the connection, which HTTP/2 cannot.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	scheme := "http"
	if opts.TLS {
		dir := opts.CertDir
		if dir == "" {
			if dir, err = os.MkdirTemp("", "rollout-emulator-ca-"); err != nil {
				ln.Close()
				return nil, err
			}
			s.tmpDir = dir
		}
		cfg, caFile, err := serverTLS(dir, []string{lhost, strings.Split(s.host, ":")[0]})
		if err != nil {
			ln.Close()
			if s.tmpDir != "" {
				os.RemoveAll(s.tmpDir)
			}
			return nil, err
		}
		s.caFile = caFile
		s.http.TLSConfig = cfg
		scheme = "https"
		ln = tls.NewListener(ln, cfg)
	}
	s.url = scheme + "://" + net.JoinHostPort(lhost, port)

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
	s.resumeJobs()
	go func() {
		// Serve returns http.ErrServerClosed after Close; there is no one else to tell.
		_ = s.http.Serve(ln)
	}()
	return s, nil
}

// ConnectionString is a service connection string for the emulator's policy.
func (s *Server) ConnectionString() string {
	return "HostName=" + s.host + ";SharedAccessKeyName=" + s.opts.PolicyName + ";SharedAccessKey=" + s.opts.PolicyKey
}

// URL is the emulator's base URL (http:// or https://127.0.0.1:PORT).
func (s *Server) URL() string { return s.url }

// CAFile is the PEM file of the CA that signed the server certificate; "" without TLS.
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

// ServeHTTP answers IoT Hub service REST requests and the emulator's own /_emulator/ endpoints.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.stateTier(w.Header())
	if strings.HasPrefix(r.URL.Path, "/_emulator/") {
		s.serveEmulator(w, r)
		return
	}
	s.requests.Add(1)
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	began := time.Now()
	defer func() {
		if s.opts.Log != nil {
			s.logMu.Lock()
			fmt.Fprintf(s.opts.Log, "%s %s %s %d %s %s\n", began.UTC().Format("15:04:05.000"), r.Method, r.URL.Path,
				rec.status, rec.code, time.Since(began).Round(time.Microsecond))
			s.logMu.Unlock()
		}
	}()
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p) // a deliberately dropped connection
			}
			// Never expected; answered as the hub's ServerError rather than a dropped connection.
			writeError(rec, fmt.Errorf("panic: %v", p))
		}
		if rec.code != "" {
			s.errMu.Lock()
			s.errCounts[rec.code]++
			s.errMu.Unlock()
		}
	}()
	if fault, slow := s.faults.draw(); fault != faultNone || slow > 0 {
		if slow > 0 {
			select {
			case <-time.After(slow):
			case <-r.Context().Done():
				return
			}
		}
		switch fault {
		case faultThrottle:
			s.faultCount.Add(1)
			writeError(rec, hubErr(hubapi.CodeThrottlingException, "Injected fault: throttled"))
			return
		case faultServerError:
			s.faultCount.Add(1)
			writeError(rec, hubErr(hubapi.CodeServerError, "Injected fault: server error"))
			return
		case faultUnavailable:
			s.faultCount.Add(1)
			writeError(rec, hubErr(hubapi.CodeServiceUnavailable, "Injected fault: service unavailable"))
			return
		case faultDrop:
			s.faultCount.Add(1)
			if hj, ok := w.(http.Hijacker); ok {
				if conn, _, err := hj.Hijack(); err == nil {
					conn.Close()
					return
				}
			}
			panic(http.ErrAbortHandler)
		}
	}
	if err := s.auth.verify(r.Header.Get("Authorization")); err != nil {
		writeError(rec, err)
		return
	}
	if r.URL.Query().Get("api-version") == "" {
		writeError(rec, hubErr(hubapi.CodeInvalidProtocolVersion, "The api-version query parameter is required (use %s)", hubapi.APIVersion))
		return
	}
	if err := s.route(rec, r); err != nil {
		writeError(rec, err)
	}
}

// statusRecorder notes the error code of a response, for Stats.
type statusRecorder struct {
	http.ResponseWriter
	code   string
	status int
}

func (r *statusRecorder) WriteHeader(status int) {
	r.status = status
	if status >= 400 {
		r.code = r.Header().Get(hubapi.HeaderErrorCode)
		if r.code == "" {
			r.code = strconv.Itoa(status)
		}
	}
	r.ResponseWriter.WriteHeader(status)
}

// segments splits the escaped path and unescapes each segment, so device ids may hold '/'-free
// characters such as '%' or '#' percent-encoded.
func segments(r *http.Request) ([]string, error) {
	p := strings.Trim(r.URL.EscapedPath(), "/")
	if p == "" {
		return nil, nil
	}
	parts := strings.Split(p, "/")
	for i, s := range parts {
		u, err := url.PathUnescape(s)
		if err != nil {
			return nil, hubErr(hubapi.CodeArgumentInvalid, "The path segment %q is not valid percent-encoding", s)
		}
		parts[i] = u
	}
	return parts, nil
}

var errNotFound = &hubError{code: hubapi.ErrorCode{Name: "GenericNotFound"}, status: http.StatusNotFound, msg: "The requested resource does not exist"}

func errMethod(r *http.Request) error {
	return &hubError{code: hubapi.ErrorCode{Name: "GenericMethodNotAllowed"}, status: http.StatusMethodNotAllowed,
		msg: "The method " + r.Method + " is not allowed on " + r.URL.Path}
}

func (s *Server) route(w http.ResponseWriter, r *http.Request) error {
	seg, err := segments(r)
	if err != nil {
		return err
	}
	switch {
	case len(seg) == 1 && seg[0] == "devices":
		if r.Method != http.MethodGet {
			return errMethod(r)
		}
		return s.listDevices(w, r)
	case len(seg) == 2 && seg[0] == "devices" && seg[1] == "query" && r.Method == http.MethodPost:
		return s.handleQuery(w, r)
	case len(seg) == 2 && seg[0] == "devices":
		switch r.Method {
		case http.MethodGet:
			return s.getDevice(w, seg[1])
		case http.MethodPut:
			return s.putDevice(w, r, seg[1])
		case http.MethodDelete:
			return s.deleteDevice(w, r, seg[1])
		}
		return errMethod(r)
	case len(seg) == 2 && seg[0] == "statistics" && (seg[1] == "devices" || seg[1] == "service"):
		if r.Method != http.MethodGet {
			return errMethod(r)
		}
		if seg[1] == "devices" {
			return s.registryStatistics(w)
		}
		return s.serviceStatistics(w)
	case len(seg) == 2 && seg[0] == "twins":
		switch r.Method {
		case http.MethodGet:
			return s.getTwin(w, seg[1])
		case http.MethodPatch, http.MethodPut:
			return s.writeTwinHandler(w, r, seg[1])
		}
		return errMethod(r)
	case len(seg) == 3 && seg[0] == "twins" && seg[2] == "methods":
		if r.Method != http.MethodPost {
			return errMethod(r)
		}
		return s.invokeHandler(w, r, seg[1])
	case len(seg) >= 4 && seg[0] == "twins" && seg[2] == "modules":
		// The emulator simulates devices without modules.
		s.store.mu.RLock()
		_, err := s.store.get(seg[1])
		s.store.mu.RUnlock()
		if err != nil {
			return err
		}
		return hubErr(hubapi.CodeModuleNotFound, "Module %s not found on device %s", seg[3], seg[1])
	case len(seg) == 3 && seg[0] == "jobs" && seg[1] == "v2" && seg[2] == "query":
		if r.Method != http.MethodGet {
			return errMethod(r)
		}
		return s.listJobs(w, r)
	case len(seg) == 3 && seg[0] == "jobs" && seg[1] == "v2":
		switch r.Method {
		case http.MethodGet:
			return s.getJob(w, seg[2])
		case http.MethodPut:
			return s.putJob(w, r, seg[2])
		}
		return errMethod(r)
	case len(seg) == 4 && seg[0] == "jobs" && seg[1] == "v2" && seg[3] == "cancel":
		if r.Method != http.MethodPost {
			return errMethod(r)
		}
		if err := s.limits.allow(QuotaJobOps); err != nil {
			return err
		}
		resp, err := s.cancelJob(seg[2])
		if err != nil {
			return err
		}
		return writeOK(w, resp)
	}
	return errNotFound
}

func writeOK(w http.ResponseWriter, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	return nil
}

// readBody reads a request body up to maxBody: a larger one is 413 MessageTooLarge.
func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, hubErr(hubapi.CodeIotHubFormatError, "The request body could not be read")
	}
	if len(b) > maxBody {
		return nil, hubErr(hubapi.CodeMessageTooLarge, "The request body is larger than %d bytes", maxBody)
	}
	return b, nil
}

// decodeBody reads a JSON object body into v: malformed JSON is 400 IotHubFormatError.
func decodeBody(r *http.Request, v any) ([]byte, error) {
	b, err := readBody(r)
	if err != nil {
		return nil, err
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return nil, hubErr(hubapi.CodeArgumentNull, "The request body is empty")
	}
	if err := json.Unmarshal(b, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, hubErr(hubapi.CodeArgumentInvalid, "The request body has a value of the wrong type at %q", te.Field)
		}
		return nil, hubErr(hubapi.CodeIotHubFormatError, "The request body is not valid JSON: %v", err)
	}
	return b, nil
}

func (s *Server) listDevices(w http.ResponseWriter, r *http.Request) error {
	if err := s.limits.allow(QuotaRegistryOps); err != nil {
		return err
	}
	top := 1000 // the hub's default and maximum for GET /devices
	if t := r.URL.Query().Get("top"); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 1 || n > 1000 {
			return hubErr(hubapi.CodeArgumentInvalid, "top must be between 1 and 1000")
		}
		top = n
	}
	s.store.mu.RLock()
	out := make([]*hubapi.Device, 0, min(top, len(s.store.byID)))
	for _, d := range s.store.order {
		if len(out) == top {
			break
		}
		if !d.deleted {
			out = append(out, s.store.deviceJSON(d))
		}
	}
	s.store.mu.RUnlock()
	return writeOK(w, out)
}

func (s *Server) getDevice(w http.ResponseWriter, id string) error {
	if err := s.limits.allow(QuotaRegistryOps); err != nil {
		return err
	}
	d, err := s.store.snapshot(id)
	if err != nil {
		return err
	}
	dj := s.store.deviceJSON(&d)
	w.Header().Set("ETag", `"`+dj.ETag+`"`)
	return writeOK(w, dj)
}

func (s *Server) putDevice(w http.ResponseWriter, r *http.Request, id string) error {
	if err := s.limits.allow(QuotaRegistryOps); err != nil {
		return err
	}
	var req hubapi.Device
	if _, err := decodeBody(r, &req); err != nil {
		return err
	}
	if req.DeviceID == "" {
		req.DeviceID = id
	}
	if req.DeviceID != id {
		return hubErr(hubapi.CodeArgumentInvalid, "The deviceId in the body (%s) differs from the one in the path (%s)", req.DeviceID, id)
	}
	if req.Status != "" && req.Status != "enabled" && req.Status != "disabled" {
		return hubErr(hubapi.CodeArgumentInvalid, "status must be enabled or disabled")
	}
	var d device
	var err error
	// A PUT with an If-Match (a specific etag or *) updates; without one (or with the empty "" that
	// Azure.IoT.Hub.Service sends) it creates, and 409 when the device exists, as the SDKs' create and
	// update calls expect.
	if strings.Trim(strings.TrimSpace(r.Header.Get("If-Match")), `"`) != "" {
		d, err = s.store.updateDevice(&req, r.Header.Get("If-Match"), time.Now().UnixNano())
	} else {
		d, err = s.store.createDevice(&req, time.Now().UnixNano())
	}
	if err != nil {
		return err
	}
	dj := s.store.deviceJSON(&d)
	w.Header().Set("ETag", `"`+dj.ETag+`"`)
	return writeOK(w, dj)
}

func (s *Server) deleteDevice(w http.ResponseWriter, r *http.Request, id string) error {
	if err := s.limits.allow(QuotaRegistryOps); err != nil {
		return err
	}
	if err := s.store.remove(id, r.Header.Get("If-Match")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) getTwin(w http.ResponseWriter, id string) error {
	if err := s.limits.allow(QuotaTwinReads); err != nil {
		return err
	}
	d, err := s.store.snapshot(id)
	if err != nil {
		return err
	}
	return writeRaw(w, appendTwin(nil, &d))
}

func writeRaw(w http.ResponseWriter, b []byte) error {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	return nil
}

// writeTwinHandler serves PATCH (merge tags and desired) and PUT (replace them) of a twin.
func (s *Server) writeTwinHandler(w http.ResponseWriter, r *http.Request, id string) error {
	if err := s.limits.allow(QuotaTwinUpdates); err != nil {
		return err
	}
	var t hubapi.Twin
	if _, err := decodeBody(r, &t); err != nil {
		return err
	}
	var tw *twinWrite
	if r.Method == http.MethodPut {
		tw = &twinWrite{replace: true, hasTags: true, hasDesired: true, tags: t.Tags}
		if t.Properties != nil {
			tw.desired = stripSystemKeys(t.Properties.Desired)
		}
		if err := validateSection(tw.tags, false, maxTagsBytes); err != nil {
			return hubErr(hubapi.CodeArgumentInvalid, "Twin tags are invalid: %v", err)
		}
		if err := validateSection(tw.desired, false, maxPropsBytes); err != nil {
			return hubErr(hubapi.CodeArgumentInvalid, "Twin desired properties are invalid: %v", err)
		}
	} else {
		var err error
		if tw, err = patchWrite(&t); err != nil {
			return err
		}
	}
	d, err := s.store.writeTwin(id, tw, r.Header.Get("If-Match"), time.Now().UnixNano())
	if err != nil {
		return err
	}
	return writeRaw(w, appendTwin(nil, &d))
}

func (s *Server) invokeHandler(w http.ResponseWriter, r *http.Request, id string) error {
	var m hubapi.CloudToDeviceMethod
	if _, err := decodeBody(r, &m); err != nil {
		return err
	}
	if err := checkMethod(&m); err != nil {
		return err
	}
	s.store.mu.RLock()
	d, err := s.store.get(id)
	s.store.mu.RUnlock()
	if err != nil {
		return err
	}
	res, err := s.invoke(r.Context(), d, &m)
	if err != nil {
		if r.Context().Err() != nil {
			return nil // the client went away
		}
		return err
	}
	return writeOK(w, res)
}

func (s *Server) putJob(w http.ResponseWriter, r *http.Request, id string) error {
	if err := s.limits.allow(QuotaJobOps); err != nil {
		return err
	}
	if !validJobID(id) {
		return hubErr(hubapi.CodeArgumentInvalid, "The job id %q is invalid: use at most 64 letters, digits and '-'", id)
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	req, tw, err := parseJobRequest(id, body, s.quotas.MaxQueryLength)
	if err != nil {
		return err
	}
	resp, err := s.createJob(req, tw)
	if err != nil {
		return err
	}
	return writeOK(w, resp)
}

func (s *Server) getJob(w http.ResponseWriter, id string) error {
	if err := s.limits.allow(QuotaJobOps); err != nil {
		return err
	}
	s.jobs.mu.RLock()
	j, ok := s.jobs.byID[id]
	var resp *hubapi.JobResponse
	if ok {
		resp = j.response()
	}
	s.jobs.mu.RUnlock()
	if !ok {
		return hubErr(hubapi.CodeJobNotFound, "Job %s not found", id)
	}
	return writeOK(w, resp)
}

// listJobs serves GET /jobs/v2/query with optional jobType and jobStatus filters (matched
// case-insensitively, as the SDKs send them differently) and header paging.
func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) error {
	return s.servePaged(w, r, QuotaJobOps, func() (*cursor, error) {
		typ, status := r.URL.Query().Get("jobType"), r.URL.Query().Get("jobStatus")
		s.jobs.mu.RLock()
		var jobs []*job
		for _, j := range s.jobs.order {
			if typ != "" && !strings.EqualFold(typ, j.req.Type) {
				continue
			}
			if status != "" && !strings.EqualFold(status, j.status) {
				continue
			}
			jobs = append(jobs, j)
		}
		s.jobs.mu.RUnlock()
		return &cursor{itemType: hubapi.ItemTypeJobResponse, n: len(jobs), render: renderLive(&s.jobs.mu, jobs, (*job).response)}, nil
	})
}

// servePaged serves a paged listing charged to quota. A request with a continuation token gets the
// next page of the stored cursor it names; any other runs first, which validates the request and
// returns the whole result, and gets its first page.
func (s *Server) servePaged(w http.ResponseWriter, r *http.Request, quota string, first func() (*cursor, error)) error {
	if err := s.limits.allow(quota); err != nil {
		return err
	}
	pageSize, err := s.pageSize(r)
	if err != nil {
		return err
	}
	if tok := r.Header.Get(hubapi.HeaderContinuation); tok != "" {
		return s.servePage(w, tok, quota, pageSize)
	}
	c, err := first()
	if err != nil {
		return err
	}
	c.source = quota
	return s.serveFirstPage(w, c, pageSize)
}

// pageSize reads x-ms-max-item-count, capped at the tier's page size.
func (s *Server) pageSize(r *http.Request) (int, error) {
	n := s.quotas.MaxPageSize
	if h := r.Header.Get(hubapi.HeaderMaxItemCount); h != "" {
		v, err := strconv.Atoi(strings.TrimSpace(h))
		if err != nil || v < 1 {
			return 0, hubErr(hubapi.CodeArgumentInvalid, "%s must be a positive number", hubapi.HeaderMaxItemCount)
		}
		n = min(v, n)
	}
	return n, nil
}
