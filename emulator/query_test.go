package emulator_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/emulator"
	"github.com/iot-rollout/rollout/hubapi"
)

// queryAll pages through a query and returns every item, checking the paging headers on the way.
func queryAll(tb testing.TB, s *emulator.Server, q string, pageSize int) ([]json.RawMessage, string, int) {
	tb.Helper()
	body, _ := json.Marshal(hubapi.QuerySpecification{Query: q})
	var all []json.RawMessage
	token, itemType, pages := "", "", 0
	for {
		hdr := []string{"x-ms-max-item-count", fmt.Sprint(pageSize)}
		if token != "" {
			hdr = append(hdr, "x-ms-continuation", token)
		}
		resp, b := do(tb, s, "POST", "/devices/query", string(body), hdr...)
		if resp.StatusCode != 200 {
			tb.Fatalf("query %q: %d %s", q, resp.StatusCode, b)
		}
		var items []json.RawMessage
		if err := json.Unmarshal(b, &items); err != nil {
			tb.Fatalf("page is not a JSON array: %s", b)
		}
		if len(items) > pageSize {
			tb.Fatalf("page of %d items, asked for %d", len(items), pageSize)
		}
		pages++
		all = append(all, items...)
		itemType = resp.Header.Get("x-ms-item-type")
		vals, present := resp.Header["X-Ms-Continuation"]
		if !present {
			return all, itemType, pages
		}
		if len(vals) != 1 || vals[0] == "" {
			tb.Fatalf("empty continuation header")
		}
		token = vals[0]
	}
}

func TestQueryTwinsPaging(t *testing.T) {
	s := start(t, emulator.Options{})
	items, typ, pages := queryAll(t, s, "SELECT * FROM devices WHERE tags.region = 'eu'", 30)
	if len(items) != 120 || pages != 4 || typ != "Twin" {
		t.Fatalf("%d items in %d pages of type %q, want 120 in 4 of Twin", len(items), pages, typ)
	}
	seen := map[string]bool{}
	for _, it := range items {
		var tw hubapi.Twin
		if err := json.Unmarshal(it, &tw); err != nil {
			t.Fatal(err)
		}
		if seen[tw.DeviceID] || tw.Tags["region"] != "eu" {
			t.Errorf("duplicate or wrong twin %s", it)
		}
		seen[tw.DeviceID] = true
	}
	// The page size is capped at 100.
	_, _, pages = queryAll(t, s, "SELECT * FROM devices", 1000)
	if pages != 2 {
		t.Errorf("123 twins in %d pages with a 100 cap, want 2", pages)
	}
}

func TestQueryShapes(t *testing.T) {
	s := start(t, emulator.Options{})
	for _, c := range []struct {
		q, typ, want string
	}{
		{"SELECT COUNT() AS n FROM devices WHERE tags.region = 'eu'", "Raw", `[{"n":120}]`},
		{"SELECT tags.ring, COUNT() AS n FROM devices WHERE tags.region = 'eu' GROUP BY tags.ring", "Raw", `[{"n":20,"ring":"canary"},{"n":100,"ring":"main"}]`},
		{"SELECT deviceId FROM devices WHERE tags.building = '43'", "Raw", `[{"deviceId":"Device-1"}]`},
		{"SELECT deviceId FROM devices WHERE properties.reported.firmware.version = '1.0.0'", "Raw", `[{"deviceId":"Device-1"}]`},
		{"SELECT deviceId FROM devices WHERE connectionState = 'Disconnected' AND NOT STARTSWITH(deviceId, 'canary')", "Raw", `[{"deviceId":"offline-1"}]`},
		{"SELECT TOP 2 deviceId FROM devices WHERE STARTSWITH(deviceId, 'eu-')", "Raw", `[{"deviceId":"eu-0000"},{"deviceId":"eu-0001"}]`},
		{"SELECT deviceId FROM devices WHERE properties.desired.$version = 1 AND deviceId IN ['Device-1', 'x']", "Raw", `[{"deviceId":"Device-1"}]`},
		{"SELECT * FROM devices.modules", "Twin", `[]`},
		{"SELECT DeviceId, ConnectionState FROM devices WHERE deviceId = 'offline-1'", "Raw", `[{"connectionState":"Disconnected","deviceId":"offline-1"}]`},
		{"SELECT ConnectionState, COUNT() AS n FROM devices WHERE STARTSWITH(deviceId, 'canary') GROUP BY ConnectionState", "Raw", `[{"connectionState":"Connected","n":18},{"connectionState":"Disconnected","n":2}]`},
	} {
		items, typ, _ := queryAll(t, s, c.q, 100)
		if items == nil {
			items = []json.RawMessage{}
		}
		got, _ := json.Marshal(items)
		if string(got) != c.want || typ != c.typ {
			t.Errorf("%s:\n got %s (%s)\nwant %s (%s)", c.q, got, typ, c.want, c.typ)
		}
	}
}

func TestQueryErrors(t *testing.T) {
	s := start(t, emulator.Options{})
	for _, c := range []struct {
		name, body string
		hdr        []string
		status     int
		code       string
	}{
		{"syntax", `{"query":"SELECT * FROM devices WHERE"}`, nil, 400, "ArgumentInvalid"},
		{"empty", `{"query":""}`, nil, 400, "ArgumentNull"},
		{"malformed", `{"query":`, nil, 400, "IotHubFormatError"},
		{"too long", `{"query":"SELECT * FROM devices WHERE deviceId = '` + strings.Repeat("a", 9000) + `'"}`, nil, 400, "ArgumentInvalid"},
		{"bad token", `{"query":"SELECT * FROM devices"}`, []string{"x-ms-continuation", "nope.1"}, 400, "ArgumentInvalid"},
		{"bad page size", `{"query":"SELECT * FROM devices"}`, []string{"x-ms-max-item-count", "-1"}, 400, "ArgumentInvalid"},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, body := do(t, s, "POST", "/devices/query", c.body, c.hdr...)
			wantError(t, resp, body, c.status, c.code)
		})
	}
}

func TestQueryLag(t *testing.T) {
	// The lag is the time the first query has to arrive in to see the old twin: generous, so that a
	// loaded machine cannot overrun it between the patch and the query.
	s := start(t, emulator.Options{QueryLag: 1500 * time.Millisecond})
	do(t, s, "PATCH", "/twins/Device-1", `{"tags":{"building":"44"}}`)
	count := func() string {
		items, _, _ := queryAll(t, s, "SELECT COUNT() AS n FROM devices WHERE tags.building = '44'", 10)
		return string(items[0])
	}
	if got := count(); got != `{"n":0}` {
		t.Errorf("right after the patch the query saw %s, want the old twin", got)
	}
	time.Sleep(1600 * time.Millisecond)
	if got := count(); got != `{"n":1}` {
		t.Errorf("after the lag the query saw %s, want the new twin", got)
	}
}

func TestQueryQuota(t *testing.T) {
	s := start(t, emulator.Options{Tier: "S1"})
	throttled := 0
	for range 10 {
		resp, body := do(t, s, "POST", "/devices/query", `{"query":"SELECT COUNT() FROM devices"}`)
		if resp.StatusCode == http.StatusTooManyRequests {
			wantError(t, resp, body, 429, "ThrottlingException")
			// 20 a minute: the next query is possible within about 3 s.
			if ra := resp.Header.Get("Retry-After"); ra != "1" && ra != "2" && ra != "3" {
				t.Errorf("Retry-After %q, want 1 to 3 seconds", ra)
			}
			throttled++
		}
	}
	// S1: 20 queries/min; the burst is ten seconds' worth (4), so most of 10 quick queries are refused.
	if throttled < 5 {
		t.Errorf("%d of 10 quick queries throttled on S1, want most", throttled)
	}
	if q := s.Stats().Quotas[emulator.QuotaQueries]; q.Throttled != int64(throttled) {
		t.Errorf("stats say %d throttled, saw %d", q.Throttled, throttled)
	}
}

// TestContinuationTokenBelongsToItsListing replays a job listing's continuation token on a twin query:
// the hub's tokens continue the listing that issued them, so the emulator refuses it rather than
// answering job pages to a twin query.
func TestContinuationTokenBelongsToItsListing(t *testing.T) {
	fleet, err := emulator.ParseFleet("three.yaml", []byte("groups: [{name: d, count: 3, idPrefix: d-}]"))
	if err != nil {
		t.Fatal(err)
	}
	s := start(t, emulator.Options{Fleet: fleet})
	for i := range 3 {
		createJob(t, s, fmt.Sprintf(`{"jobId":"j-%d","type":"scheduleUpdateTwin","queryCondition":"*",
			"updateTwin":{"etag":"*","tags":{"n":%d}}}`, i, i))
	}
	resp, _ := do(t, s, "GET", "/jobs/v2/query", "", "x-ms-max-item-count", "1")
	token := resp.Header.Get("x-ms-continuation")
	if resp.StatusCode != 200 || token == "" {
		t.Fatalf("job listing: %d, continuation %q", resp.StatusCode, token)
	}
	body, _ := json.Marshal(hubapi.QuerySpecification{Query: "SELECT * FROM devices"})
	resp, b := do(t, s, "POST", "/devices/query", string(body), "x-ms-continuation", token)
	if resp.StatusCode != 400 || resp.Header.Get("iothub-errorcode") != "ArgumentInvalid" {
		t.Errorf("twin query with a job listing's token: %d %s, want 400 ArgumentInvalid", resp.StatusCode, b)
	}
	if resp, _ := do(t, s, "GET", "/jobs/v2/query", "", "x-ms-max-item-count", "1", "x-ms-continuation", token); resp.StatusCode != 200 {
		t.Errorf("the token no longer continues its own listing: %d", resp.StatusCode)
	}
}
