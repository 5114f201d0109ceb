package emulator

import (
	"bytes"
	"context"
	"encoding/json"
	"time"

	"github.com/iot-rollout/rollout/hubapi"
)

// invoke calls a direct method on a device, alone or from a job. A device driven by a real client is
// called over its connection (invokeExternal). A simulated offline (or disabled)
// device is waited for during connectTimeoutInSeconds and then answers 404103 DeviceNotOnline; a device in
// its group's timeout share, or whose latency exceeds responseTimeoutInSeconds, answers 504101
// GatewayTimeout after the response timeout; one in the failure share answers status 500; the others
// answer 200 echoing the request payload after their latency.
func (s *Server) invoke(ctx context.Context, d *device, m *hubapi.CloudToDeviceMethod) (*hubapi.MethodResult, error) {
	flags, disabled, beh, id, err := s.store.callMethod(d)
	if err != nil {
		return nil, err
	}

	// A call under way when the emulator shuts down finishes at once with the answer the device would
	// have given: the device already has it, and a job resumed from the data file must not call it
	// again. (A job's context is cancelled on shutdown too, so sleep prefers done.)
	wait := func(dur time.Duration) error {
		if dur > 0 && sleep(dur, s.done, ctx.Done()) == stopped {
			return ctx.Err()
		}
		return nil
	}
	if flags&flagExternal != 0 && !disabled {
		return s.invokeExternal(ctx, id, m)
	}
	if flags&flagOffline != 0 || disabled {
		if err := wait(time.Duration(m.ConnectTimeoutInSeconds) * time.Second); err != nil {
			return nil, err
		}
		return nil, hubErr(hubapi.CodeDeviceNotOnline, "Timed out waiting for device to connect.")
	}
	respTimeout := time.Duration(m.ResponseTimeoutInSeconds) * time.Second
	if flags&flagMethodTimeout != 0 || beh.MethodLatency > respTimeout {
		if err := wait(respTimeout); err != nil {
			return nil, err
		}
		return nil, hubErr(hubapi.CodeGatewayTimeout, "Timed out waiting for the response from device.")
	}
	if err := wait(beh.MethodLatency); err != nil {
		return nil, err
	}
	if flags&flagMethodFailure != 0 {
		payload, _ := json.Marshal(map[string]any{"error": "simulated failure", "deviceId": id, "methodName": m.MethodName})
		return &hubapi.MethodResult{Status: 500, Payload: payload}, nil
	}
	payload := m.Payload
	if len(payload) == 0 {
		payload = json.RawMessage("null")
	}
	return &hubapi.MethodResult{Status: 200, Payload: payload}, nil
}

// wakeCause is what ended a sleep.
type wakeCause int

const (
	elapsed wakeCause = iota
	closing           // done was closed
	stopped           // stop was closed, and done was not
)

// sleep waits d, or until done or stop is closed, and says which came first; done wins when both are
// closed.
func sleep(d time.Duration, done, stop <-chan struct{}) wakeCause {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return elapsed
	case <-done:
		return closing
	case <-stop:
		select {
		case <-done:
			return closing
		default:
			return stopped
		}
	}
}

// callMethod counts a direct method call on d, and its delivery when d is online, and returns what
// the simulated device's answer depends on.
func (s *store) callMethod(d *device) (flags uint8, disabled bool, beh *Behavior, id string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d.deleted && d.mod != nil {
		return 0, false, nil, "", hubErr(hubapi.CodeModuleNotFound, "Module %s not found on device %s", d.mod.id, d.id)
	}
	if d.deleted {
		return 0, false, nil, "", hubErr(hubapi.CodeDeviceNotFound, "Device %s not registered", d.id)
	}
	d.methodCalls++
	if d.connected() && !d.disabled {
		d.methodCallsDelivered++
		d.lastActivity = time.Now().UnixNano()
	}
	disabled = d.disabled
	if d.mod != nil {
		disabled = s.byID[d.id] == nil || s.byID[d.id].disabled
	}
	return d.flags, disabled, d.beh, d.key(), nil
}

// checkMethod checks a direct-method call's fields and fills in the default response timeout.
func checkMethod(m *hubapi.CloudToDeviceMethod) error {
	if m.MethodName == "" {
		return hubErr(hubapi.CodeArgumentNull, "methodName is required")
	}
	if len(m.MethodName) > 1024 {
		return hubErr(hubapi.CodeArgumentInvalid, "methodName is too long")
	}
	if m.ResponseTimeoutInSeconds == 0 {
		m.ResponseTimeoutInSeconds = 30
	}
	if m.ResponseTimeoutInSeconds < 5 || m.ResponseTimeoutInSeconds > 300 {
		return hubErr(hubapi.CodeArgumentInvalid, "responseTimeoutInSeconds must be between 5 and 300, got %d", m.ResponseTimeoutInSeconds)
	}
	if m.ConnectTimeoutInSeconds < 0 || m.ConnectTimeoutInSeconds > 300 {
		return hubErr(hubapi.CodeArgumentInvalid, "connectTimeoutInSeconds must be between 0 and 300, got %d", m.ConnectTimeoutInSeconds)
	}
	if len(m.Payload) > 128*1024 {
		return hubErr(hubapi.CodeMessageTooLarge, "The method payload is larger than 128 KB")
	}
	if len(bytes.TrimSpace(m.Payload)) == 0 {
		m.Payload = json.RawMessage("null")
	}
	return nil
}
