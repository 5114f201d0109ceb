package notify

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/engine"
)

func TestMessageOf(t *testing.T) {
	for _, tc := range []struct {
		ev   engine.Event
		want string // "" for no notification
	}{
		{engine.Event{Type: engine.EventWaiting, Reason: "approval", WaveName: "eu"}, WaitingForApproval},
		{engine.Event{Type: engine.EventWaiting, Reason: "bake"}, ""},
		{engine.Event{Type: engine.EventGateFailed, Reason: "wave eu: after batch 1: 3 failed"}, GateFailed},
		{engine.Event{Type: engine.EventGateFailed, Reason: "budget: 51 failed or timed out over the rollout"}, BudgetTripped},
		{engine.Event{Type: engine.EventHalted, Reason: "wave eu: after batch 1"}, Halted},
		{engine.Event{Type: engine.EventRolledBack, Devices: 9}, RolledBack},
		{engine.Event{Type: engine.EventDone}, Done},
		{engine.Event{Type: engine.EventBatchDone}, ""},
		{engine.Event{Type: engine.EventVerify}, ""},
	} {
		m, ok := MessageOf(tc.ev)
		if got := map[bool]string{true: m.Event}[ok]; got != tc.want {
			t.Errorf("%s (%s): %q, want %q", tc.ev.Type, tc.ev.Reason, got, tc.want)
		}
	}
}

// receiver is a webhook that answers the first fail requests with status, then 200.
type receiver struct {
	mu       sync.Mutex
	fail     int
	status   int
	attempts int
	got      []Message
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts++
	if r.fail > 0 {
		r.fail--
		w.Header().Set("Retry-After", "0")
		w.WriteHeader(r.status)
		return
	}
	var m Message
	if req.Header.Get("Content-Type") != "application/json" || json.NewDecoder(req.Body).Decode(&m) != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.got = append(r.got, m)
}

func TestDelivery(t *testing.T) {
	for _, tc := range []struct {
		name      string
		fail      int
		status    int
		delivered bool
		attempts  int
		log       string
	}{
		{"first try", 0, 0, true, 1, ""},
		{"retried after two 503s", 2, http.StatusServiceUnavailable, true, 3, ""},
		{"gives up after the attempts", 9, http.StatusBadGateway, false, 3, "notification rolledBack not delivered: the webhook answered 502 Bad Gateway after 3 attempts"},
		{"no retry on 404", 9, http.StatusNotFound, false, 1, "the webhook answered 404 Not Found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &receiver{fail: tc.fail, status: tc.status}
			srv := httptest.NewServer(r)
			defer srv.Close()
			var log bytes.Buffer
			n, err := New(srv.URL+"/hooks/s3cr3t-token", Options{Attempts: 3, Backoff: time.Millisecond, Log: &log})
			if err != nil {
				t.Fatal(err)
			}
			n.Event(engine.Event{Type: engine.EventRolledBack, Rollout: "fw", Devices: 9})
			n.Close(10 * time.Second)
			if (len(r.got) == 1) != tc.delivered || r.attempts != tc.attempts {
				t.Errorf("delivered %d, %d attempts; want delivered %v in %d attempts", len(r.got), r.attempts, tc.delivered, tc.attempts)
			}
			if tc.delivered && (r.got[0].Event != RolledBack || r.got[0].Rollout != "fw" || !strings.Contains(r.got[0].Text, "rolled back 9 devices")) {
				t.Errorf("got %+v", r.got[0])
			}
			if !strings.Contains(log.String(), tc.log) || strings.Contains(log.String(), "s3cr3t") {
				t.Errorf("log %q, want %q and no URL", log.String(), tc.log)
			}
		})
	}
}

// TestSecretURL: neither an unreachable webhook nor a bad URL puts the URL, or its host, in an error.
func TestSecretURL(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL + "/hooks/s3cr3t-token?sig=t0ps3cret"
	host := strings.TrimPrefix(srv.URL, "http://")
	srv.Close()
	var log bytes.Buffer
	n, err := New(url, Options{Attempts: 2, Backoff: time.Millisecond, Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	n.Event(engine.Event{Type: engine.EventDone, Rollout: "fw"})
	n.Close(10 * time.Second)
	if !strings.Contains(log.String(), "notification done not delivered: posting to the webhook") {
		t.Errorf("log %q", log.String())
	}
	for _, secret := range []string{"s3cr3t", "t0ps3cret", host} {
		if strings.Contains(log.String(), secret) {
			t.Errorf("log %q holds %q", log.String(), secret)
		}
	}
	for _, bad := range []string{"ftp://x/s3cr3t", "/relative/s3cr3t", "http:///s3cr3t", "http://x/%zzs3cr3t"} {
		if err := Check(bad); err == nil || strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("Check(%q) = %v", bad, err)
		}
	}
}
