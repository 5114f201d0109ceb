package hubapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/google/uuid"
)

// Options configure a Client. The zero value talks HTTPS to the hub with sane timeouts, retries
// transient failures up to 8 times, and paces itself adaptively.
type Options struct {
	// HTTPClient sends the requests; nil gives one with connect and TLS handshake timeouts that does
	// not follow redirects (so no token is ever sent to another host). It must not be combined with
	// CAFile.
	HTTPClient *http.Client
	// PlainHTTP uses http:// instead of https://, for local endpoints such as the in-process
	// emulator. Tokens then cross the wire in clear text: never use it for a remote hub.
	PlainHTTP bool
	// CAFile is a PEM file of extra certificate authorities to trust, for a local HTTPS endpoint.
	CAFile string
	// Quotas are the hub's limits (see TierQuotas); the client spends the jobs-operations, query and
	// twin budgets evenly so as not to provoke 429s. Nil: adaptive, unpaced until the hub answers
	// 429, then slowing down and speeding up again as calls succeed.
	Quotas *Quotas
	// MaxRetries bounds retries of one call after its first attempt: 0 means 8, negative means none.
	MaxRetries int
	// MinBackoff is the first retry's nominal wait (default 500ms); each retry doubles it, up to
	// MaxBackoff (default 30s), and the wait is drawn uniformly from its upper half (jitter).
	// A Retry-After from the hub replaces the computed wait (capped at 5 minutes).
	MinBackoff, MaxBackoff time.Duration
	// RequestTimeout bounds each attempt of a call (default 60s). A direct method's attempt gets its
	// response and connect timeouts plus 30s instead.
	RequestTimeout time.Duration
	// RetryInvoke lets InvokeMethod resend a call that may have reached the hub (after a reset
	// connection or a 5xx), which can run the method twice on the device. Without it, a direct method
	// is resent only when it certainly did not run: it was never sent, or the hub answered 429.
	RetryInvoke bool
	// Clock is the time source for token expiry, backoff and pacing; nil is the system clock.
	Clock Clock
	// EntraScope replaces EntraScope for clients made with NewWithCredential (sovereign clouds).
	EntraScope string
	// UserAgent is prepended to the client's own User-Agent.
	UserAgent string
	// Logger receives a debug record for each retry (operation, status, code, wait); nil discards.
	// Records never carry credentials.
	Logger *slog.Logger
}

// Defaults of Options.
const (
	DefaultMaxRetries     = 8
	DefaultMinBackoff     = 500 * time.Millisecond
	DefaultMaxBackoff     = 30 * time.Second
	DefaultRequestTimeout = 60 * time.Second
	maxRetryAfter         = 5 * time.Minute
	maxBodyBytes          = 64 << 20 // a page of 100 full-size twins is about 7 MB
	userAgent             = "rollout-hubapi/1 (api-version " + APIVersion + ")"
)

// Client calls one IoT Hub's service REST API. It is safe for concurrent use. Every call retries
// transient failures (429, 5xx, connection resets) with exponential backoff and jitter, honours
// Retry-After, and stops when its context ends; see Options for the bounds and for direct methods.
type Client struct {
	host    string
	base    string // scheme://host
	auth    authorizer
	http    *http.Client
	clk     Clock
	pace    *pacer
	log     *slog.Logger
	retries int
	minBack time.Duration
	maxBack time.Duration
	timeout time.Duration
	ua      string
	invoke  bool
	jitter  func(n time.Duration) time.Duration // uniform in [0, n]
}

// NewFromConnectionString makes a client that signs its requests with the connection string's shared
// access policy. The error never contains the key.
func NewFromConnectionString(cs string, opts Options) (*Client, error) {
	parsed, err := ParseConnectionString(cs)
	if err != nil {
		return nil, err
	}
	return New(parsed, opts)
}

// New makes a client from a parsed connection string.
func New(cs ConnectionString, opts Options) (*Client, error) {
	if !cs.valid() {
		return nil, errors.New("hubapi: the connection string is not initialised (use ParseConnectionString)")
	}
	c, err := newClient(cs.HostName, opts)
	if err != nil {
		return nil, err
	}
	c.auth = &sasAuth{cs: cs, clk: c.clk}
	return c, nil
}

// NewWithCredential makes a client that authenticates with Microsoft Entra through cred (for instance
// azidentity.NewDefaultAzureCredential), asking for Options.EntraScope or EntraScope. Tokens are cached
// and renewed before they expire. host is the hub's host name, e.g. myhub.azure-devices.net.
func NewWithCredential(host string, cred azcore.TokenCredential, opts Options) (*Client, error) {
	if cred == nil {
		return nil, errors.New("hubapi: NewWithCredential needs a credential")
	}
	if err := checkHost(host); err != nil {
		return nil, fmt.Errorf("hubapi: host %w", err)
	}
	c, err := newClient(host, opts)
	if err != nil {
		return nil, err
	}
	scope := opts.EntraScope
	if scope == "" {
		scope = EntraScope
	}
	c.auth = &entraAuth{cred: cred, scope: scope, clk: c.clk}
	return c, nil
}

func newClient(host string, opts Options) (*Client, error) {
	c := &Client{
		host:    host,
		clk:     opts.Clock,
		log:     opts.Logger,
		retries: opts.MaxRetries,
		minBack: opts.MinBackoff,
		maxBack: opts.MaxBackoff,
		timeout: opts.RequestTimeout,
		ua:      strings.TrimSpace(opts.UserAgent + " " + userAgent),
		invoke:  opts.RetryInvoke,
		jitter:  func(n time.Duration) time.Duration { return rand.N(n + 1) },
	}
	if c.clk == nil {
		c.clk = WallClock
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	switch {
	case c.retries == 0:
		c.retries = DefaultMaxRetries
	case c.retries < 0:
		c.retries = 0
	}
	if c.minBack <= 0 {
		c.minBack = DefaultMinBackoff
	}
	if c.maxBack <= 0 {
		c.maxBack = DefaultMaxBackoff
	}
	c.maxBack = max(c.maxBack, c.minBack)
	if c.timeout <= 0 {
		c.timeout = DefaultRequestTimeout
	}
	scheme := "https"
	if opts.PlainHTTP {
		if opts.CAFile != "" {
			return nil, errors.New("hubapi: CAFile has no use with PlainHTTP")
		}
		scheme = "http"
	}
	c.base = scheme + "://" + host
	switch {
	case opts.HTTPClient != nil && opts.CAFile != "":
		return nil, errors.New("hubapi: give either HTTPClient or CAFile, not both (add the CA to your client's transport)")
	case opts.HTTPClient != nil:
		c.http = opts.HTTPClient
	default:
		hc, err := defaultHTTPClient(opts.CAFile)
		if err != nil {
			return nil, err
		}
		c.http = hc
	}
	c.pace = newPacer(c.clk, opts.Quotas)
	return c, nil
}

// defaultHTTPClient bounds connecting and the TLS handshake but not the whole exchange: each attempt
// has its own deadline, and a direct method may legitimately take minutes.
func defaultHTTPClient(caFile string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSHandshakeTimeout = 10 * time.Second
	tr.MaxIdleConnsPerHost = 32
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("hubapi: reading CA file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("hubapi: CA file %s holds no PEM certificate", caFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

// Host is the hub host the client talks to.
func (c *Client) Host() string { return c.host }

// String names the hub and how the client authenticates, without any secret.
func (c *Client) String() string {
	if c == nil {
		return "hubapi.Client(nil)"
	}
	return "hubapi.Client{" + c.base + ", " + c.auth.describe() + "}"
}

// GoString is the %#v form: the same as String.
func (c *Client) GoString() string { return c.String() }

// Format makes every fmt verb print String, so no verb can reach the cached tokens or keys.
func (c *Client) Format(f fmt.State, verb rune) { formatRedacted(f, verb, c.String(), c.GoString()) }

// call describes one operation: the request, the throttle bucket it draws from, and whether it may be
// resent after it possibly reached the hub.
type call struct {
	name       string // e.g. "GetTwin", for logs
	method     string
	path       string // already escaped
	query      url.Values
	header     http.Header
	body       any // marshalled to JSON; nil sends no body
	class      opClass
	idempotent bool
	timeout    time.Duration // 0: the client's RequestTimeout
	// contactBudget, when positive, stops retrying failures with no answer from the hub (noAnswer)
	// once the next attempt would start this long after the first.
	contactBudget time.Duration
}

func (cl *call) op() string { return cl.method + " " + cl.path }

// response is a successful answer, body fully read.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do runs a call with pacing, authentication and bounded retries.
func (c *Client) do(ctx context.Context, cl *call) (*response, error) {
	var body []byte
	if cl.body != nil {
		b, err := json.Marshal(cl.body)
		if err != nil {
			return nil, fmt.Errorf("hubapi: %s: encoding the request: %w", cl.name, err)
		}
		body = b
	}
	reauthed := false
	var last error
	tries := 0
	start := c.clk.Now()
	for attempt := 0; ; attempt++ {
		if err := c.pace.wait(ctx, cl.class); err != nil {
			return nil, stopped(err, last)
		}
		tries++
		resp, sent, err := c.once(ctx, cl, body)
		if err == nil {
			c.pace.succeeded(cl.class)
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, stopped(ctx.Err(), err)
		}
		retry := false
		if e, ok := asError(err); ok {
			e.Attempts = tries
			switch {
			case e.StatusCode == http.StatusUnauthorized && !reauthed:
				// A token the hub refuses (its clock ahead of ours, a key rotated) is dropped and
				// the call made once more with a fresh one; the hub ran nothing.
				reauthed = true
				c.auth.invalidate()
				last = err
				attempt--
				continue
			case e.StatusCode == http.StatusTooManyRequests:
				c.pace.throttled(cl.class)
				// Inferred: a throttled request is refused before it runs, so even a direct
				// method may be resent.
				retry = true
			case e.Retryable():
				retry = cl.idempotent || !sent
			}
		} else if ce, ok := asContactError(err); ok {
			ce.Attempts, ce.Elapsed = tries, c.clk.Now().Sub(start)
			retry = ce.Retryable() // nothing reached the hub
		} else {
			var te *transportError
			if errors.As(err, &te) && transient(te.err) {
				retry = cl.idempotent || !sent
			}
		}
		if !retry || attempt >= c.retries {
			return nil, err
		}
		wait := c.backoff(attempt, err)
		if cl.contactBudget > 0 && noAnswer(err) && c.clk.Now().Add(wait).Sub(start) > cl.contactBudget {
			return nil, err
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return nil, err // the context would end before the retry; say why now
		}
		c.log.LogAttrs(ctx, slog.LevelDebug, "iothub retry",
			slog.String("op", cl.op()), slog.Int("attempt", attempt+1), slog.Duration("wait", wait),
			slog.String("error", err.Error()))
		if serr := sleep(ctx, c.clk, wait); serr != nil {
			return nil, stopped(serr, err)
		}
		last = err
	}
}

// stopped reports a context that ended between attempts, keeping the last hub error visible.
func stopped(ctxErr, last error) error {
	if last == nil {
		return ctxErr
	}
	return fmt.Errorf("%w; last error: %w", ctxErr, last)
}

// backoff is the wait before retry number attempt+1: the hub's Retry-After when it gave one, else
// exponential from MinBackoff, capped at MaxBackoff, drawn from the upper half ("equal jitter", so a
// throttled client always waits at least half the nominal time).
func (c *Client) backoff(attempt int, err error) time.Duration {
	if e, ok := asError(err); ok && e.RetryAfter > 0 {
		return min(e.RetryAfter, maxRetryAfter)
	}
	d := c.maxBack
	if attempt < 30 {
		d = min(c.minBack<<attempt, c.maxBack)
	}
	return d/2 + c.jitter(d/2)
}

// once makes one attempt. sent reports whether any of the request may have reached the hub.
func (c *Client) once(ctx context.Context, cl *call, body []byte) (*response, bool, error) {
	// The trace hooks may run on the transport's writer goroutine.
	var wrote atomic.Bool
	resp, err := c.attempt(ctx, cl, body, &wrote)
	return resp, wrote.Load(), err
}

func (c *Client) attempt(ctx context.Context, cl *call, body []byte, wrote *atomic.Bool) (*response, error) {
	timeout := cl.timeout
	if timeout <= 0 {
		timeout = c.timeout
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	actx = httptrace.WithClientTrace(actx, &httptrace.ClientTrace{
		WroteHeaderField: func(string, []string) { wrote.Store(true) },
		WroteHeaders:     func() { wrote.Store(true) },
	})
	q := url.Values{}
	for k, v := range cl.query {
		q[k] = v
	}
	q.Set("api-version", APIVersion)
	u := c.base + cl.path + "?" + q.Encode()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(actx, cl.method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("hubapi: %s: %w", cl.name, err)
	}
	for k, v := range cl.header {
		req.Header[k] = v
	}
	auth, err := c.auth.header(ctx)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", auth)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.ua)
	req.Header.Set("Request-Id", uuid.NewString())
	if body != nil {
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
	}
	hr, err := c.http.Do(req)
	if err != nil {
		err = unwrapURL(err)
		if ce := c.contactError(cl.op(), err); ce != nil {
			return nil, ce
		}
		return nil, &transportError{op: cl.op(), err: err}
	}
	defer hr.Body.Close()
	data, err := io.ReadAll(io.LimitReader(hr.Body, maxBodyBytes+1))
	if err != nil {
		return nil, &transportError{op: cl.op(), err: fmt.Errorf("reading the response: %w", unwrapURL(err))}
	}
	if len(data) > maxBodyBytes {
		return nil, &Error{StatusCode: hr.StatusCode, Op: cl.op(), Message: fmt.Sprintf("the response is larger than %d bytes", maxBodyBytes)}
	}
	if hr.StatusCode < 200 || hr.StatusCode > 299 {
		e := parseError(hr.StatusCode, hr.Header, data, cl.op())
		e.RetryAfter = retryAfter(hr.Header, c.clk.Now())
		return nil, e
	}
	return &response{status: hr.StatusCode, header: hr.Header, body: data}, nil
}

// unwrapURL drops net/http's *url.Error wrapper, whose text repeats the whole URL.
func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// retryAfter reads Retry-After (seconds or an HTTP date) and the millisecond variants Azure services
// send; 0 when absent or unreadable.
func retryAfter(h http.Header, now time.Time) time.Duration {
	for _, k := range []string{"Retry-After-Ms", "X-Ms-Retry-After-Ms"} {
		if v := h.Get(k); v != "" {
			if ms, err := strconv.ParseFloat(v, 64); err == nil && ms > 0 {
				return scaled(ms, time.Millisecond)
			}
		}
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil {
		if s > 0 {
			return scaled(s, time.Second)
		}
		return 0
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// scaled converts a positive count of units to a duration, saturating instead of overflowing for a
// huge or infinite value such as "1e300" or "Inf", so the caller's cap applies.
func scaled(n float64, unit time.Duration) time.Duration {
	if n >= float64(math.MaxInt64)/float64(unit) {
		return math.MaxInt64
	}
	return time.Duration(n * float64(unit))
}

// decode reads a success body into out; a body that is not the expected JSON gives a typed *Error.
func decode(resp *response, op string, out any) error {
	if err := json.Unmarshal(resp.body, out); err != nil {
		msg := fmt.Sprintf("the hub's response could not be read (%d bytes): %v", len(resp.body), err)
		if len(bytes.TrimSpace(resp.body)) == 0 {
			msg = "the hub's response was empty"
		}
		return &Error{StatusCode: resp.status, Op: op, Message: msg}
	}
	return nil
}

// escape percent-encodes one path segment, escaping everything but unreserved characters, as the
// SDKs' encodeURIComponent does: device ids may hold + % # ? and more.
func escape(id string) string {
	return strings.ReplaceAll(url.QueryEscape(id), "+", "%20")
}

// ifMatch gives the If-Match header for etag: none for "", and otherwise the etag quoted, as both SDKs
// send it ("*" included); an etag that is already quoted is kept.
func ifMatch(etag string) http.Header {
	if etag == "" {
		return nil
	}
	if !(len(etag) >= 2 && strings.HasPrefix(etag, `"`) && strings.HasSuffix(etag, `"`)) {
		etag = `"` + etag + `"`
	}
	return http.Header{"If-Match": {etag}}
}
