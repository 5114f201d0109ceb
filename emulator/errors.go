package emulator

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/iot-rollout/rollout/hubapi"
)

// hubError is an error the emulator answers with the hub's status, error code and body.
type hubError struct {
	code       hubapi.ErrorCode
	status     int // 0: the code's own status
	msg        string
	retryAfter int // seconds, for 429s; 0: 1
}

func (e *hubError) Error() string { return e.code.Name + ": " + e.msg }

func hubErr(code hubapi.ErrorCode, format string, args ...any) *hubError {
	return &hubError{code: code, msg: fmt.Sprintf(format, args...)}
}

func (e *hubError) httpStatus() int {
	if e.status != 0 {
		return e.status
	}
	if s := e.code.Status(); s != 0 {
		return s
	}
	return http.StatusBadRequest
}

// trackingID is a fresh 32-hex-digit id, as the hub puts in every error.
func trackingID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// writeError answers with the hub's error shape A: {"Message":"ErrorCode:<Name>;<text>",
// "ExceptionMessage":"Tracking ID:<id>-G:0-TimeStamp:<MM/dd/yyyy HH:mm:ss>"} and the iothub-errorcode
// header. Errors that are not hub errors are the emulator's own faults: they are answered as ServerError
// but never expected (tests assert none occurs).
func writeError(w http.ResponseWriter, err error) {
	var he *hubError
	if !errors.As(err, &he) {
		he = &hubError{code: hubapi.CodeServerError, msg: "internal error: " + err.Error()}
	}
	body := hubapi.ErrorBody{
		Message:          "ErrorCode:" + he.code.Name + ";" + he.msg,
		ExceptionMessage: "Tracking ID:" + trackingID() + "-G:0-TimeStamp:" + time.Now().UTC().Format("01/02/2006 15:04:05"),
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set(hubapi.HeaderErrorCode, he.code.Name)
	if he.code.Status() == http.StatusTooManyRequests {
		h.Set("Retry-After", strconv.Itoa(max(1, he.retryAfter)))
	}
	w.WriteHeader(he.httpStatus())
	_ = json.NewEncoder(w).Encode(body)
}
