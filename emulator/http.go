package emulator

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/iot-rollout/rollout/hubapi"
)

// ServeHTTP answers IoT Hub service REST requests and the emulator's own /_emulator/ endpoints.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.stateTier(w.Header())
	if r.URL.Path == deviceWebSocketPath {
		s.serveDeviceWebSocket(w, r)
		return
	}
	if strings.HasPrefix(r.URL.Path, "/_emulator/") {
		s.serveEmulator(w, r)
		return
	}
	s.requests.Add(1)
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	began := time.Now()
	defer s.log.request(r, rec, began)
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p) // a deliberately dropped connection
			}
			// Never expected; answered as the hub's ServerError rather than a dropped connection.
			writeError(rec, fmt.Errorf("panic: %v", p))
		}
		if rec.code != "" {
			s.errors.add(rec.code)
		}
	}()
	if s.injectFault(w, rec, r) {
		return
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

// injectFault slows the request or answers it with a fault, as the seeded draw decides; it reports
// whether the request is answered (or dropped, or gone) already.
func (s *Server) injectFault(w http.ResponseWriter, rec *statusRecorder, r *http.Request) bool {
	fault, slow := s.faults.draw()
	if slow > 0 {
		select {
		case <-time.After(slow):
		case <-r.Context().Done():
			return true
		}
	}
	if fault == faultNone {
		return false
	}
	s.faultCount.Add(1)
	switch fault {
	case faultThrottle:
		writeError(rec, hubErr(hubapi.CodeThrottlingException, "Injected fault: throttled"))
	case faultServerError:
		writeError(rec, hubErr(hubapi.CodeServerError, "Injected fault: server error"))
	case faultUnavailable:
		writeError(rec, hubErr(hubapi.CodeServiceUnavailable, "Injected fault: service unavailable"))
	case faultDrop:
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return true
			}
		}
		panic(http.ErrAbortHandler)
	}
	return true
}

// requestLog writes a line per IoT Hub request to Options.Log; it is safe for concurrent use, and
// without a writer it writes nothing.
type requestLog struct {
	mu sync.Mutex
	w  io.Writer
}

// request logs the answer rec recorded to r, begun at began: method, path, status, error code and
// duration. Tokens and bodies are never logged.
func (l *requestLog) request(r *http.Request, rec *statusRecorder, began time.Time) {
	if l.w == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "%s %s %s %d %s %s\n", began.UTC().Format("15:04:05.000"), r.Method, r.URL.Path,
		rec.status, rec.code, time.Since(began).Round(time.Microsecond))
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
		if strings.Contains(u, "/") {
			// No id holds a '/', and a module's key is {deviceId}/{moduleId}: an escaped one would
			// name a module where the path names a device.
			return nil, hubErr(hubapi.CodeArgumentInvalid, "The path segment %q holds a '/', which no id can hold", s)
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

// route serves an IoT Hub request with the handler its path and method name, charged to the handler's
// quota (statistics and direct methods are charged to none).
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
		return s.charge(QuotaRegistryOps, func() error { return s.listDevices(w, r) })
	case len(seg) == 2 && seg[0] == "devices" && seg[1] == "query" && r.Method == http.MethodPost:
		return s.charge(QuotaQueries, func() error { return s.handleQuery(w, r) })
	case len(seg) == 2 && seg[0] == "devices":
		switch r.Method {
		case http.MethodGet:
			return s.charge(QuotaRegistryOps, func() error { return s.getDevice(w, seg[1]) })
		case http.MethodPut:
			return s.charge(QuotaRegistryOps, func() error { return s.putDevice(w, r, seg[1]) })
		case http.MethodDelete:
			return s.charge(QuotaRegistryOps, func() error { return s.deleteDevice(w, r, seg[1]) })
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
			return s.charge(QuotaTwinReads, func() error { return s.getTwin(w, seg[1]) })
		case http.MethodPatch, http.MethodPut:
			return s.charge(QuotaTwinUpdates, func() error { return s.writeTwinHandler(w, r, seg[1]) })
		}
		return errMethod(r)
	case len(seg) == 3 && seg[0] == "twins" && seg[2] == "methods":
		if r.Method != http.MethodPost {
			return errMethod(r)
		}
		return s.invokeHandler(w, r, seg[1])
	case len(seg) >= 1 && seg[0] == "configurations":
		return s.routeConfigurations(w, r, seg)
	case len(seg) >= 3 && seg[2] == "modules" && (seg[0] == "twins" || seg[0] == "devices"):
		return s.routeModule(w, r, seg)
	case len(seg) == 3 && seg[0] == "jobs" && seg[1] == "v2" && seg[2] == "query":
		if r.Method != http.MethodGet {
			return errMethod(r)
		}
		return s.charge(QuotaJobOps, func() error { return s.listJobs(w, r) })
	case len(seg) == 3 && seg[0] == "jobs" && seg[1] == "v2":
		switch r.Method {
		case http.MethodGet:
			return s.charge(QuotaJobOps, func() error { return s.getJob(w, seg[2]) })
		case http.MethodPut:
			return s.charge(QuotaJobOps, func() error { return s.putJob(w, r, seg[2]) })
		}
		return errMethod(r)
	case len(seg) == 4 && seg[0] == "jobs" && seg[1] == "v2" && seg[3] == "cancel":
		if r.Method != http.MethodPost {
			return errMethod(r)
		}
		return s.charge(QuotaJobOps, func() error { return s.cancelJob(w, seg[2]) })
	}
	return errNotFound
}

// charge takes one request from quota, then serves it with h.
func (s *Server) charge(quota string, h func() error) error {
	if err := s.limits.allow(quota); err != nil {
		return err
	}
	return h()
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

func writeRaw(w http.ResponseWriter, b []byte) error {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	return nil
}
