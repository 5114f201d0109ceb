package main

import (
	"bytes"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/emulator"
	"github.com/iot-rollout/rollout/emulator/emulatortest"
	"github.com/iot-rollout/rollout/hubapi"
)

// TestEmulatorToken: the token `rollout emulator token` prints is accepted by a running emulator for
// the key it was signed with, refused for any other, and expires after --ttl.
func TestEmulatorToken(t *testing.T) {
	const otherKey = "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0xMjM0NTY3OA=="
	dev := emulatortest.Start(t, "", emulator.Options{})
	custom := emulatortest.Start(t, "", emulator.Options{PolicyName: "ops", PolicyKey: otherKey})
	for _, tc := range []struct {
		name   string
		srv    *emulator.Server
		args   []string
		env    map[string]string
		status int
	}{
		{"development key", dev, nil, nil, http.StatusOK},
		{"--key", custom, []string{"--policy", "ops", "--key", otherKey}, nil, http.StatusOK},
		{"key from the environment", custom, []string{"--policy", "ops"}, map[string]string{"ROLLOUT_EMULATOR_POLICY_KEY": otherKey}, http.StatusOK},
		{"wrong key", custom, []string{"--policy", "ops"}, nil, http.StatusUnauthorized},
		{"wrong policy", dev, []string{"--policy", "service"}, nil, http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs, err := hubapi.ParseConnectionString(tc.srv.ConnectionString())
			if err != nil {
				t.Fatal(err)
			}
			args := append([]string{"emulator", "token", "--host", cs.HostName, "--ttl", "2h"}, tc.args...)
			var stdout, stderr bytes.Buffer
			code := mainEnv(args, nil, &stdout, &stderr, func(k string) string { return tc.env[k] })
			if code != exitOK || stderr.Len() > 0 {
				t.Fatalf("exit %d, stderr %q", code, stderr.String())
			}
			token := strings.TrimSuffix(stdout.String(), "\n")
			if strings.Contains(token, "\n") || !strings.HasPrefix(token, "SharedAccessSignature ") {
				t.Fatalf("stdout %q, want one token line", stdout.String())
			}
			fields, err := url.ParseQuery(strings.TrimPrefix(token, "SharedAccessSignature "))
			if err != nil {
				t.Fatal(err)
			}
			se, _ := strconv.ParseInt(fields.Get("se"), 10, 64)
			if d := time.Until(time.Unix(se, 0)); d < 2*time.Hour-time.Minute || d > 2*time.Hour+time.Second {
				t.Errorf("the token expires in %v, want 2h (--ttl)", d)
			}
			req, _ := http.NewRequest("GET", tc.srv.URL()+"/statistics/devices?api-version="+hubapi.APIVersion, nil)
			req.Header.Set("Authorization", token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Errorf("status %d with the token, want %d", resp.StatusCode, tc.status)
			}
		})
	}
}
