package hubapi_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/hubapi/hubapitest"
)

func page(ids []string, continuation *string) reply {
	body := "["
	for i, id := range ids {
		if i > 0 {
			body += ","
		}
		body += fmt.Sprintf(`{"deviceId":%q}`, id)
	}
	r := reply{status: 200, body: body + "]", header: map[string]string{"x-ms-item-type": "Twin"}}
	if continuation != nil {
		r.header["x-ms-continuation"] = *continuation
	}
	return r
}

func ptr(s string) *string { return &s }

// TestPagingAcrossPages reads three pages: the continuation token of each page is sent back verbatim
// with the next request, the page size with every one, and paging stops at the page without a token.
func TestPagingAcrossPages(t *testing.T) {
	tok1 := `{"token":"+RID:~abc==#RT:1#TRC:2","range":{"min":"","max":"FF"}}`
	tok2 := "opaque/2+="
	hub := newFakeHub(t, hubapitest.NewAutoClock(t0))
	hub.queue(page([]string{"a", "b"}, &tok1), page([]string{"c", "d"}, &tok2), page([]string{"e"}, nil))
	c := hub.client(hubapi.Options{})
	p := c.Query(context.Background(), "SELECT * FROM devices", 2)
	var got []string
	pages := 0
	for p.More() {
		items, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, it := range items {
			got = append(got, string(it))
		}
	}
	if pages != 3 || len(got) != 5 || got[4] != `{"deviceId":"e"}` || p.ItemType() != "Twin" {
		t.Errorf("pages %d items %v type %q", pages, got, p.ItemType())
	}
	reqs := hub.requests()
	wantCont := []string{"", tok1, tok2}
	for i, r := range reqs {
		if _, has := r.Header["X-Ms-Continuation"]; (i == 0) == has {
			t.Errorf("request %d: x-ms-continuation present = %v", i, has)
		}
		if got := r.Header.Get("x-ms-continuation"); got != wantCont[i] {
			t.Errorf("request %d continuation %q, want %q", i, got, wantCont[i])
		}
		if got := r.Header.Get("x-ms-max-item-count"); got != "2" {
			t.Errorf("request %d page size %q", i, got)
		}
		if !jsonEqual(t, r.Body, `{"query":"SELECT * FROM devices"}`) {
			t.Errorf("request %d body %s", i, r.Body)
		}
	}
	if _, err := p.NextPage(context.Background()); !errors.Is(err, hubapi.ErrNoMorePages) {
		t.Errorf("NextPage after the last = %v", err)
	}
}

// TestPagingStopsOnEmptyToken: an empty x-ms-continuation ends paging like an absent one (the Node SDK
// would loop forever on it; we must not).
func TestPagingStopsOnEmptyToken(t *testing.T) {
	hub := newFakeHub(t, hubapitest.NewAutoClock(t0))
	hub.queue(page([]string{"a"}, ptr("t1")), page([]string{"b"}, ptr("")))
	twins, err := hubapi.Collect[hubapi.Twin](context.Background(), hub.client(hubapi.Options{}).Query(context.Background(), "SELECT * FROM devices", 0))
	if err != nil || len(twins) != 2 || twins[1].DeviceID != "b" {
		t.Errorf("Collect = %v, %v", twins, err)
	}
	if r := hub.requests()[0]; r.Header.Get("x-ms-max-item-count") != "" {
		t.Error("page size 0 must leave x-ms-max-item-count out")
	}
}

// TestPagingRetriesAPage: a page that fails transiently is retried with the same continuation, and a
// page that fails for good can be asked for again.
func TestPagingRetriesAPage(t *testing.T) {
	hub := newFakeHub(t, hubapitest.NewAutoClock(t0))
	hub.queue(page([]string{"a"}, ptr("t1")), unavailable(), page([]string{"b"}, nil))
	twins, err := hubapi.Collect[hubapi.Twin](context.Background(), hub.client(hubapi.Options{}).Query(context.Background(), "SELECT * FROM devices", 0))
	if err != nil || len(twins) != 2 {
		t.Fatalf("Collect = %v, %v", twins, err)
	}
	if r := hub.requests(); r[1].Header.Get("x-ms-continuation") != "t1" || r[2].Header.Get("x-ms-continuation") != "t1" {
		t.Error("a retried page must resend its continuation token")
	}

	hub = newFakeHub(t, hubapitest.NewAutoClock(t0))
	hub.queue(page([]string{"a"}, ptr("t1")), reply{status: 400, body: `{"Message":"ErrorCode:ArgumentInvalid;bad","ExceptionMessage":""}`}, page([]string{"b"}, nil))
	p := hub.client(hubapi.Options{}).Query(context.Background(), "SELECT * FROM devices", 0)
	if _, err := p.NextPage(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := p.NextPage(context.Background()); err == nil || !p.More() {
		t.Fatalf("second page: err %v, More %v; want an error and More still true", err, p.More())
	}
	if items, err := p.NextPage(context.Background()); err != nil || len(items) != 1 || p.More() {
		t.Errorf("resumed page: %v, %v", items, err)
	}
}

// TestPagerBadInput: an empty or overlong query, or a job id that is not one, fails without a request.
func TestPagerBadInput(t *testing.T) {
	hub := newFakeHub(t, hubapitest.NewAutoClock(t0))
	c := hub.client(hubapi.Options{})
	long := "SELECT * FROM devices WHERE deviceId = '" + string(make([]byte, 9000)) + "'"
	for name, p := range map[string]*hubapi.Pager{
		"empty":        c.Query(context.Background(), " ", 0),
		"too long":     c.Query(context.Background(), long, 0),
		"bad job id":   c.DeviceJobs(context.Background(), "x' OR '1'='1", "", 0),
		"empty job id": c.DeviceJobs(context.Background(), "", "", 0),
	} {
		if !p.More() {
			t.Errorf("%s: More must be true until the error is read", name)
		}
		if _, err := p.NextPage(context.Background()); err == nil {
			t.Errorf("%s: no error", name)
		}
		if p.More() {
			t.Errorf("%s: More after the error", name)
		}
	}
	if n := len(hub.requests()); n != 0 {
		t.Errorf("%d requests made", n)
	}
}
