package hubapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Error is every error the hub answers with (and every response rollout could not read), carrying the
// HTTP status, IoT Hub's error code, the tracking id support asks for, and the hub's message. Errors of
// the transport are not *Error: see ContactError (a host that does not resolve, a refused connection,
// an untrusted certificate) and IsRetryable.
type Error struct {
	StatusCode int       // HTTP status; 200 for a success response whose body could not be read
	Code       ErrorCode // from the body or the iothub-errorcode header; zero when the hub gave none
	TrackingID string
	Message    string
	// Op is the request that failed, e.g. "PATCH /twins/dev1". It carries no credentials.
	Op string
	// RetryAfter is what the hub's Retry-After header asked for; 0 when it sent none.
	RetryAfter time.Duration
	// Attempts counts the requests made, retries included. An "already exists" on a later attempt
	// usually means an earlier attempt succeeded but its answer was lost.
	Attempts int
}

// maxMessage bounds the hub text kept in an Error, so that a runaway body does not flood a terminal.
const maxMessage = 1000

// Error gives the operation, code, message, tracking id and what the user can do.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("iothub: ")
	if e.Op != "" {
		b.WriteString(e.Op + ": ")
	}
	switch {
	case e.Code.Name != "" && e.Code.Number != 0:
		fmt.Fprintf(&b, "%s (%d)", e.Code.Name, e.Code.Number)
	case e.Code.Name != "":
		fmt.Fprintf(&b, "%s (HTTP %d)", e.Code.Name, e.StatusCode)
	case e.Code.Number != 0:
		fmt.Fprintf(&b, "error %d", e.Code.Number)
	default:
		fmt.Fprintf(&b, "HTTP %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.TrackingID != "" {
		b.WriteString(" [tracking id " + e.TrackingID + "]")
	}
	if h := e.Hint(); h != "" {
		b.WriteString(" (" + h + ")")
	}
	return b.String()
}

// Hint says what a user can do about the error, or "" when there is nothing specific to say.
func (e *Error) Hint() string {
	switch {
	case e.Code == CodeDeviceNotOnline:
		return "the device is not connected or has not registered the method; a job or connectTimeoutInSeconds reaches devices that come online later"
	case e.Code == CodeGatewayTimeout:
		return "the device did not answer within responseTimeoutInSeconds; it may still have run the method"
	case e.Code == CodeThrottlingMaxActiveJobCountExceeded || e.Code == CodeJobQuotaExceeded:
		return "the hub's tier allows no more concurrent jobs; wait for running jobs to finish"
	case e.StatusCode == http.StatusTooManyRequests:
		return "the hub is throttling; slow down, or give the client the hub's tier so it paces itself"
	case e.StatusCode == http.StatusUnauthorized:
		return "check the connection string's policy and key, or the Microsoft Entra role assignment (e.g. IoT Hub Data Contributor)"
	case e.StatusCode == http.StatusForbidden:
		return "the credential lacks a permission or the hub's quota is spent"
	case e.StatusCode == http.StatusPreconditionFailed:
		return "the twin or device changed since its etag was read; read it again"
	case e.StatusCode == http.StatusConflict:
		return "it already exists"
	}
	return ""
}

// Retryable reports whether repeating the request may succeed: throttling (429), request timeouts and
// server errors. A direct method's GatewayTimeout (504101) is not retryable, because the device may
// have run the method, and neither is a job cancelled by the hub (500002).
func (e *Error) Retryable() bool {
	switch {
	case e.Code == CodeGatewayTimeout, e.Code == CodeJobCancelled:
		return false
	case e.StatusCode == http.StatusTooManyRequests, e.StatusCode == http.StatusRequestTimeout:
		return true
	case e.StatusCode >= 500 && e.StatusCode != http.StatusNotImplemented && e.StatusCode != http.StatusHTTPVersionNotSupported:
		return true
	}
	return false
}

func asError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

func asContactError(err error) (*ContactError, bool) {
	var e *ContactError
	ok := errors.As(err, &e)
	return e, ok
}

// IsThrottled reports whether err is a hub 429: a rate quota, the concurrent-job limit, or a backlog.
func IsThrottled(err error) bool {
	e, ok := asError(err)
	return ok && e.StatusCode == http.StatusTooManyRequests
}

// IsNotFound reports whether the device, job or module does not exist. DeviceNotOnline, also a 404,
// is not "not found": the device exists but is not connected (see IsDeviceNotOnline).
func IsNotFound(err error) bool {
	e, ok := asError(err)
	return ok && e.StatusCode == http.StatusNotFound && e.Code != CodeDeviceNotOnline
}

// IsPreconditionFailed reports an etag mismatch (412).
func IsPreconditionFailed(err error) bool {
	e, ok := asError(err)
	return ok && e.StatusCode == http.StatusPreconditionFailed
}

// IsDeviceNotOnline reports that a direct method found its device disconnected (404103).
func IsDeviceNotOnline(err error) bool {
	e, ok := asError(err)
	return ok && (e.Code == CodeDeviceNotOnline || e.Code.Name == CodeDeviceNotOnline.Name)
}

// IsGatewayTimeout reports that the hub gave up waiting (504), for a direct method: the device did not
// answer within responseTimeoutInSeconds.
func IsGatewayTimeout(err error) bool {
	e, ok := asError(err)
	return ok && (e.StatusCode == http.StatusGatewayTimeout || e.Code == CodeGatewayTimeout)
}

// IsAlreadyExists reports a 409: a device or job with that id exists (DeviceAlreadyExists,
// JobAlreadyExists).
func IsAlreadyExists(err error) bool {
	e, ok := asError(err)
	return ok && e.StatusCode == http.StatusConflict
}

// IsRetryable reports whether err is transient: a retryable *Error, or a transport failure such as a
// refused or reset connection. Certificate errors, a host name that does not resolve, a cancelled
// context and bad input are not.
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}
	if e, ok := asError(err); ok {
		return e.Retryable()
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	if ce, ok := asContactError(err); ok {
		return ce.Retryable()
	}
	// Checked before DeadlineExceeded: one attempt running out of time is worth another.
	var te *transportError
	if errors.As(err, &te) {
		return transient(te.err)
	}
	return false
}

// transportError is a failure below HTTP (dial, TLS, reset, timeout) on one request.
type transportError struct {
	op  string
	err error
}

func (e *transportError) Error() string { return "iothub: " + e.op + ": " + e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

// transient reports whether a transport failure may pass: everything but certificate problems, a
// name that does not resolve, and talking HTTP to an HTTPS port (or the reverse), which repeat
// identically.
func transient(err error) bool {
	var (
		cv  *tls.CertificateVerificationError
		ua  x509.UnknownAuthorityError
		he  x509.HostnameError
		ci  x509.CertificateInvalidError
		rhe tls.RecordHeaderError
		dns *net.DNSError
	)
	switch {
	case errors.As(err, &cv), errors.As(err, &ua), errors.As(err, &he), errors.As(err, &ci), errors.As(err, &rhe):
		return false
	case errors.As(err, &dns) && dns.IsNotFound:
		return false
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return false
	}
	return true
}

// parseError reads a hub error response: the iothub-errorcode header and either body shape of
// iothub-rest.md §1.4 — A, {"Message":"ErrorCode:<Name>;<text>","ExceptionMessage":"Tracking ID:..."},
// or B, whose Message is itself a JSON string holding errorCode, trackingId and message. Anything else
// (HTML from a proxy, an empty or truncated body) still gives a typed *Error with the HTTP status.
func parseError(status int, header http.Header, body []byte, op string) *Error {
	e := &Error{StatusCode: status, Op: op}
	name := strings.TrimSpace(header.Get(HeaderErrorCode))
	number := 0
	trimmed := bytes.TrimSpace(body)
	switch {
	case len(trimmed) == 0:
		e.Message = "the hub sent no error details"
	case trimmed[0] != '{':
		ct := header.Get("Content-Type")
		if ct == "" {
			ct = "no content type"
		}
		e.Message = fmt.Sprintf("the hub sent a non-JSON error body (%s, %d bytes)", ct, len(trimmed))
	default:
		var b struct {
			Message          string          `json:"Message"`
			ExceptionMessage string          `json:"ExceptionMessage"`
			ErrorCode        json.RawMessage `json:"errorCode"`
			TrackingID       string          `json:"trackingId"`
		}
		if err := json.Unmarshal(trimmed, &b); err != nil {
			e.Message = fmt.Sprintf("the hub sent an unreadable error body (%d bytes): %v", len(trimmed), err)
			break
		}
		msg := strings.TrimSpace(b.Message)
		if len(b.ErrorCode) > 0 { // shape B without the outer wrapper
			number = codeNumber(b.ErrorCode)
			e.TrackingID = b.TrackingID
		}
		switch {
		case strings.HasPrefix(msg, "{"):
			var p struct {
				ErrorCode  json.RawMessage `json:"errorCode"`
				TrackingID string          `json:"trackingId"`
				Message    string          `json:"message"`
			}
			if err := json.Unmarshal([]byte(msg), &p); err != nil {
				e.Message = msg
				break
			}
			number = codeNumber(p.ErrorCode)
			e.TrackingID = p.TrackingID
			e.Message = p.Message
		case strings.HasPrefix(msg, "ErrorCode:"):
			n, text, _ := strings.Cut(strings.TrimPrefix(msg, "ErrorCode:"), ";")
			if n = strings.TrimSpace(n); n != "" {
				name = n
			}
			e.Message = strings.TrimSpace(text)
		default:
			e.Message = msg
		}
		if e.TrackingID == "" {
			e.TrackingID = trackingID(b.ExceptionMessage)
		}
	}
	if len(e.Message) > maxMessage {
		e.Message = e.Message[:maxMessage] + "..."
	}
	e.Code = resolveCode(name, number)
	return e
}

// codeNumber reads errorCode, which the hub writes as a number or as a numeric string.
func codeNumber(raw json.RawMessage) int {
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		if v, err := n.Int64(); err == nil {
			return int(v)
		}
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if v, err := strconv.Atoi(strings.TrimSpace(s)); err == nil {
			return v
		}
	}
	return 0
}

// trackingID takes the id out of "Tracking ID:<id>-G:<n>-TimeStamp:<...>".
func trackingID(s string) string {
	_, rest, ok := strings.Cut(s, "Tracking ID:")
	if !ok {
		return ""
	}
	id, _, _ := strings.Cut(rest, "-G:")
	id, _, _ = strings.Cut(id, "-TimeStamp:")
	return strings.TrimSpace(id)
}

// resolveCode combines what the header and body said into one code, filling in the name or number
// from the table of known codes.
func resolveCode(name string, number int) ErrorCode {
	if name != "" {
		if c, ok := LookupCode(name); ok {
			if number != 0 {
				c.Number = number
			}
			return c
		}
		return ErrorCode{Number: number, Name: name}
	}
	if number != 0 {
		if c, ok := LookupNumber(number); ok {
			return c
		}
	}
	return ErrorCode{Number: number}
}
