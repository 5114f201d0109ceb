package hubapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/hubapi/hubapitest"
)

// t0 is the fake clock's start: 2026-01-01T00:00:00Z.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// swagger is loaded once: every request any fake hub receives is checked against it.
var (
	swaggerOnce sync.Once
	swagger     *hubapitest.Swagger
)

func loadSwagger(tb testing.TB) *hubapitest.Swagger {
	swaggerOnce.Do(func() { swagger = hubapitest.LoadSwagger(tb, "") })
	if swagger == nil {
		tb.Fatal("swagger not loaded")
	}
	return swagger
}

// recorded is one request a fake hub received.
type recorded struct {
	Method string
	Path   string // escaped, as on the wire
	Query  url.Values
	Header http.Header
	Body   []byte
	At     time.Time // fake-clock time of arrival
}

// reply is one canned answer; reset closes the connection without answering.
type reply struct {
	status int
	header map[string]string
	body   string
	reset  bool
}

// fakeHub is an httptest server that answers from a queue of replies, records every request and holds
// each to the swagger.
type fakeHub struct {
	t     testing.TB
	srv   *httptest.Server
	clock *hubapitest.Clock

	mu      sync.Mutex
	replies []reply
	reqs    []recorded
}

func newFakeHub(t testing.TB, clock *hubapitest.Clock) *fakeHub {
	h := &fakeHub{t: t, clock: clock}
	sw := loadSwagger(t)
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := sw.Check(r, body); err != nil {
			t.Errorf("request disagrees with the swagger: %v", err)
		}
		h.mu.Lock()
		h.reqs = append(h.reqs, recorded{r.Method, r.URL.EscapedPath(), r.URL.Query(), r.Header.Clone(), body, clock.Now()})
		if len(h.replies) == 0 {
			h.mu.Unlock()
			t.Errorf("unexpected request %s %s", r.Method, r.URL)
			http.Error(w, "no reply queued", http.StatusTeapot)
			return
		}
		rep := h.replies[0]
		h.replies = h.replies[1:]
		h.mu.Unlock()
		if rep.reset {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		for k, v := range rep.header {
			w.Header().Set(k, v)
		}
		if w.Header().Get("Content-Type") == "" && rep.body != "" {
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
		}
		w.WriteHeader(rep.status)
		io.WriteString(w, rep.body)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *fakeHub) host() string { return strings.TrimPrefix(h.srv.URL, "http://") }

func (h *fakeHub) queue(rs ...reply) {
	h.mu.Lock()
	h.replies = append(h.replies, rs...)
	h.mu.Unlock()
}

func (h *fakeHub) requests() []recorded {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]recorded(nil), h.reqs...)
}

// client connects to the fake hub with the test policy over plain HTTP, fast backoff unless opts say
// otherwise.
func (h *fakeHub) client(opts hubapi.Options) *hubapi.Client {
	h.t.Helper()
	opts.PlainHTTP = true
	if opts.Clock == nil {
		opts.Clock = h.clock
	}
	c, err := hubapi.NewFromConnectionString(testConnString(h.host()), opts)
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

func ok(body string) reply { return reply{status: 200, body: body} }

// jsonEqual compares two JSON texts by value.
func jsonEqual(tb testing.TB, got []byte, want string) bool {
	tb.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		tb.Errorf("body is not JSON: %v: %s", err, got)
		return false
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		tb.Fatalf("bad want JSON: %v", err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	return bytes.Equal(gb, wb)
}

func httptestRequest(method, target, body string) *http.Request {
	return httptest.NewRequest(method, target, strings.NewReader(body))
}
