package hubapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
)

// Pager reads a query or job listing page by page, in the shape of azcore's runtime.Pager: call
// NextPage while More is true. Each page is one request, retried like any other call; a failed
// NextPage may be called again and resumes where it stopped. A Pager is not safe for concurrent use.
type Pager struct {
	c        *Client
	call     call
	pageSize int
	cont     string
	started  bool
	done     bool
	err      error // a request that cannot be made; NextPage returns it once
	itemType string
	// src, when set, gives the pages instead of the hub (see PagerFunc).
	src func(ctx context.Context) (items []json.RawMessage, more bool, err error)
}

// PagerFunc returns a Pager whose pages come from next, which gives one page and whether more follow;
// an error from next is returned as NextPage's and ends nothing (the caller decides). It lets a
// client over several hubs (or a test) hand the engine pages of its own.
func PagerFunc(next func(ctx context.Context) (items []json.RawMessage, more bool, err error)) *Pager {
	return &Pager{src: next}
}

// ErrNoMorePages is returned by NextPage once the last page has been read.
var ErrNoMorePages = errors.New("hubapi: no more pages")

// More reports whether NextPage has a page to give: true until a page came back without a
// continuation token.
func (p *Pager) More() bool { return !p.done }

// ItemType is the x-ms-item-type of the last page (Twin, DeviceJob, JobResponse or Raw), "" before the
// first.
func (p *Pager) ItemType() string { return p.itemType }

// NextPage fetches the next page: the items as raw JSON, in the hub's order.
func (p *Pager) NextPage(ctx context.Context) ([]json.RawMessage, error) {
	if p.err != nil {
		p.done = true
		err := p.err
		p.err = ErrNoMorePages
		return nil, err
	}
	if p.done {
		return nil, ErrNoMorePages
	}
	if p.src != nil {
		items, more, err := p.src(ctx)
		if err != nil {
			return nil, err
		}
		p.started, p.done = true, !more
		return items, nil
	}
	cl := p.call
	cl.header = http.Header{}
	if p.pageSize > 0 {
		cl.header.Set(HeaderMaxItemCount, strconv.Itoa(p.pageSize))
	}
	if p.started {
		cl.header.Set(HeaderContinuation, p.cont)
	}
	resp, err := p.c.do(ctx, &cl)
	if err != nil {
		return nil, err
	}
	items, err := pageItems(resp, cl.op())
	if err != nil {
		return nil, err
	}
	p.started = true
	p.itemType = resp.header.Get(HeaderItemType)
	p.cont = resp.header.Get(HeaderContinuation)
	if p.cont == "" {
		p.done = true
	}
	return items, nil
}

// pageItems reads a page: a JSON array on the wire. The swagger's QueryResult object
// ({"items": [...]}) is accepted as well, though no hub was seen to send it (iothub-rest.md §0).
func pageItems(resp *response, op string) ([]json.RawMessage, error) {
	body := bytes.TrimSpace(resp.body)
	var items []json.RawMessage
	if len(body) > 0 && body[0] == '{' {
		var qr struct {
			Items []json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal(body, &qr); err == nil && qr.Items != nil {
			return qr.Items, nil
		}
	}
	if err := decode(resp, op, &items); err != nil {
		return nil, err
	}
	return items, nil
}

// Each reads every remaining page of p and calls fn on each item, in order, stopping at the first
// error (a page's, or fn's, returned as it is).
func (p *Pager) Each(ctx context.Context, fn func(json.RawMessage) error) error {
	for p.More() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return err
		}
		for _, raw := range page {
			if err := fn(raw); err != nil {
				return err
			}
		}
	}
	return nil
}

// Collect reads every remaining page of p and decodes each item as T. On error it returns the items
// decoded so far with the error.
func Collect[T any](ctx context.Context, p *Pager) ([]T, error) {
	var out []T
	err := p.Each(ctx, func(raw json.RawMessage) error {
		var v T
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("hubapi: decoding item %d as %T: %w", len(out), v, err)
		}
		out = append(out, v)
		return nil
	})
	return out, err
}
