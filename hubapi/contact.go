package hubapi

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ContactError is a failure to reach the hub at all, before any HTTP answer: its host name does not
// resolve, nothing accepts connections at its address, or its TLS certificate is signed by an
// authority the client does not trust. Its text names the host and what to check, never a credential.
// Only a refused connection is retryable (a hub or an emulator may be starting); the others would
// repeat identically, so they are reported after the first attempt.
type ContactError struct {
	Reason ContactReason
	// Host is the address the client dials: the hub's host with its port, 443 (or 80 with PlainHTTP)
	// when the connection string names none.
	Host string
	// Op is the request that failed, e.g. "GET /statistics/devices".
	Op string
	// Attempts counts the requests tried, retries included; Elapsed is the time from the first to the
	// last, on the client's clock.
	Attempts int
	Elapsed  time.Duration
	// Err is the cause: a *net.DNSError, a *net.OpError, an x509.UnknownAuthorityError (wrapped in a
	// *tls.CertificateVerificationError).
	Err error
}

// ContactReason says why a ContactError could not reach the hub.
type ContactReason int

// Reasons of a ContactError.
const (
	NoSuchHost        ContactReason = iota + 1 // the host name does not resolve (DNS: no such host)
	ConnectionRefused                          // nothing accepts connections at the host and port
	UnknownAuthority                           // the TLS certificate's issuer is not trusted
)

// Error says what failed and, after a semicolon, what to check (Hint).
func (e *ContactError) Error() string {
	var what string
	switch e.Reason {
	case NoSuchHost:
		what = fmt.Sprintf("hub host %q does not resolve (no such host)", hostOnly(e.Host))
	case ConnectionRefused:
		what = fmt.Sprintf("nothing accepts connections at %s (connection refused", e.Host)
		if e.Attempts > 1 {
			what += fmt.Sprintf("; %d attempts in %s", e.Attempts, e.Elapsed.Round(100*time.Millisecond))
		}
		what += ")"
	case UnknownAuthority:
		what = fmt.Sprintf("the hub's TLS certificate (%s) is signed by an unknown authority", e.Host)
	default:
		what = fmt.Sprintf("cannot reach %s: %v", e.Host, e.Err)
	}
	if h := e.Hint(); h != "" {
		what += "; " + h
	}
	return "iothub: " + what
}

// Hint says what a user can do about the error.
func (e *ContactError) Hint() string {
	switch e.Reason {
	case NoSuchHost:
		return "check the connection string's HostName or --hub"
	case ConnectionRefused:
		if loopback(hostOnly(e.Host)) {
			return "is the emulator running? (rollout emulator prints the connection string to use)"
		}
		return "check the connection string's HostName or --hub, and that the network lets you reach it"
	case UnknownAuthority:
		return "for a local hub pass its CA with --ca-file or SSL_CERT_FILE (rollout emulator prints the CA file)"
	}
	return ""
}

// Unwrap gives the cause, so errors.As finds the *net.DNSError or x509 error beneath.
func (e *ContactError) Unwrap() error { return e.Err }

// Retryable reports whether trying again may succeed: only for a refused connection.
func (e *ContactError) Retryable() bool { return e.Reason == ConnectionRefused }

// contactError classifies a failure of the transport as a ContactError, or gives nil for any other
// (a reset, a timeout, a hostname mismatch), which stays a transportError. A DNS failure for another
// name than the hub's (a proxy's) is not the hub's host failing to resolve, and is not classified.
func (c *Client) contactError(op string, err error) *ContactError {
	var (
		dns *net.DNSError
		ua  x509.UnknownAuthorityError
	)
	ce := &ContactError{Host: c.dialAddr(), Op: op, Err: err}
	switch {
	case errors.As(err, &dns) && dns.IsNotFound && strings.EqualFold(dns.Name, hostOnly(ce.Host)):
		ce.Reason = NoSuchHost
	case errors.Is(err, syscall.ECONNREFUSED):
		ce.Reason = ConnectionRefused
	case errors.As(err, &ua):
		ce.Reason = UnknownAuthority
	default:
		return nil
	}
	return ce
}

// dialAddr is host:port of the hub.
func (c *Client) dialAddr() string {
	if _, _, err := net.SplitHostPort(c.host); err == nil {
		return c.host
	}
	if strings.HasPrefix(c.base, "http://") {
		return net.JoinHostPort(c.host, "80")
	}
	return net.JoinHostPort(c.host, "443")
}

// hostOnly drops the port of host:port.
func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// noAnswer reports whether err is a failure below HTTP: the hub did not answer at all.
func noAnswer(err error) bool {
	var (
		ce *ContactError
		te *transportError
	)
	return errors.As(err, &ce) || errors.As(err, &te)
}

// ProbeContactBudget bounds how long Probe retries when the hub does not answer at all (a refused
// connection, a reset): a first contact that fails says so within seconds, while later calls, which
// follow a contact that worked, keep the client's full retries.
const ProbeContactBudget = 5 * time.Second

// HubInfo is what a first contact learned about the hub.
type HubInfo struct {
	// Tier is the tier the hub states in its responses (HeaderEmulatorTier: "F1", "S1", "S2", "S3" or
	// "unlimited"), as rollout's emulator does; "" when the hub states none, as a real IoT Hub does.
	Tier string
	// Units is the stated unit count (HeaderEmulatorUnits): at least 1 when Tier is set (1 when the
	// header is missing or unreadable), 0 when it is not.
	Units int
}

// Quotas gives the quotas of the stated tier, for Options.Quotas; nil (and no error) when the hub
// stated no tier, and an error for a tier TierQuotas does not know.
func (h HubInfo) Quotas() (*Quotas, error) {
	if h.Tier == "" {
		return nil, nil
	}
	q, err := TierQuotas(h.Tier, max(h.Units, 1))
	if err != nil {
		return nil, fmt.Errorf("hubapi: the hub states %w", err)
	}
	return &q, nil
}

// Probe makes the first contact with the hub: one cheap, read-only request that any shared access
// policy rollout can use is allowed — GET /statistics/devices (registry read), and when that is refused
// with 401 or 403, GET /statistics/service (service connect) — and reads the tier the answer states
// (see HubInfo). It blocks until the hub answers or ctx ends.
//
// A host that does not resolve or a certificate from an unknown authority fails at once with a
// *ContactError; a refused connection is retried for at most ProbeContactBudget, then fails with one.
// Any other error is what the hub answered, as from every call.
func (c *Client) Probe(ctx context.Context) (HubInfo, error) {
	info, err := c.probe(ctx, "/statistics/devices", new(RegistryStatistics))
	if e, ok := asError(err); ok && (e.StatusCode == http.StatusUnauthorized || e.StatusCode == http.StatusForbidden) {
		if info, err2 := c.probe(ctx, "/statistics/service", new(ServiceStatistics)); err2 == nil {
			return info, nil
		}
	}
	return info, err
}

func (c *Client) probe(ctx context.Context, path string, out any) (HubInfo, error) {
	cl := &call{name: "Probe", method: "GET", path: path, class: classRegistry, idempotent: true, contactBudget: ProbeContactBudget}
	resp, err := c.do(ctx, cl)
	if err != nil {
		return HubInfo{}, err
	}
	if err := decode(resp, cl.op(), out); err != nil {
		return HubInfo{}, err
	}
	return hubInfo(resp.header), nil
}

// hubInfo reads the tier headers of a response.
func hubInfo(h http.Header) HubInfo {
	tier := strings.TrimSpace(h.Get(HeaderEmulatorTier))
	if tier == "" {
		return HubInfo{}
	}
	units, err := strconv.Atoi(strings.TrimSpace(h.Get(HeaderEmulatorUnits)))
	if err != nil || units < 1 {
		units = 1
	}
	return HubInfo{Tier: tier, Units: units}
}
