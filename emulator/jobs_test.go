package emulator_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/emulator"
	"github.com/iot-rollout/rollout/hubapi"
)

func createJob(tb testing.TB, s *emulator.Server, body string) hubapi.JobResponse {
	tb.Helper()
	var req map[string]any
	if err := json.Unmarshal([]byte(body), &req); err != nil {
		tb.Fatal(err)
	}
	resp, b := do(tb, s, "PUT", "/jobs/v2/"+req["jobId"].(string), body)
	if resp.StatusCode != 200 {
		tb.Fatalf("create job: %d %s", resp.StatusCode, b)
	}
	var jr hubapi.JobResponse
	if err := json.Unmarshal(b, &jr); err != nil {
		tb.Fatal(err)
	}
	return jr
}

func getJob(tb testing.TB, s *emulator.Server, id string) hubapi.JobResponse {
	tb.Helper()
	resp, b := do(tb, s, "GET", "/jobs/v2/"+id, "")
	if resp.StatusCode != 200 {
		tb.Fatalf("get job: %d %s", resp.StatusCode, b)
	}
	var jr hubapi.JobResponse
	if err := json.Unmarshal(b, &jr); err != nil {
		tb.Fatal(err)
	}
	return jr
}

func waitJob(tb testing.TB, s *emulator.Server, id string, timeout time.Duration) hubapi.JobResponse {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		jr := getJob(tb, s, id)
		if jr.Terminal() {
			return jr
		}
		if time.Now().After(deadline) {
			tb.Fatalf("job %s still %s after %v", id, jr.Status, timeout)
		}
		time.Sleep(650 * time.Millisecond) // S1 allows 100 job operations a minute: stay under it
	}
}

// awaitJobStatus waits until the job timeline shows the job reaching status. It reads Stats rather
// than GET /jobs/v2, so polling spends none of the tier's job operations, and it waits for the event
// itself rather than a fixed time, which a loaded machine may overrun.
func awaitJobStatus(tb testing.TB, s *emulator.Server, id, status string, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, e := range s.Stats().Jobs {
			if e.JobID == id && e.Status == status {
				return
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("job %s did not become %s within %v", id, status, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestTwinJob(t *testing.T) {
	s := start(t, emulator.Options{})
	jr := createJob(t, s, `{"jobId":"twin-1","type":"scheduleUpdateTwin","queryCondition":"tags.ring = 'canary'",
		"updateTwin":{"etag":"*","tags":{"fwChannel":"stable"},"properties":{"desired":{"firmware":{"version":"2.4.0"}}}}}`)
	if jr.Status != "queued" || jr.JobID != "twin-1" || jr.Type != "scheduleUpdateTwin" {
		t.Errorf("create answered %+v, want queued", jr)
	}
	jr = waitJob(t, s, "twin-1", 5*time.Second)
	st := jr.DeviceJobStatistics
	if jr.Status != "completed" || st == nil || st.DeviceCount != 20 || st.SucceededCount != 20 || st.FailedCount != 0 {
		t.Fatalf("job ended %s with %+v, want completed with 20 succeeded", jr.Status, st)
	}
	if jr.EndTime == nil || jr.CreatedTime == nil {
		t.Errorf("job times missing: %+v", jr)
	}
	items, typ, _ := queryAll(t, s, "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'twin-1'", 7)
	if len(items) != 20 || typ != "DeviceJob" {
		t.Fatalf("%d devices.jobs rows of type %q, want 20 DeviceJob", len(items), typ)
	}
	var row hubapi.DeviceJob
	if err := json.Unmarshal(items[0], &row); err != nil {
		t.Fatal(err)
	}
	if row.Status != "completed" || row.JobType != "scheduleUpdateTwin" || row.JobID != "twin-1" {
		t.Errorf("row %s", items[0])
	}
	items, _, _ = queryAll(t, s, "SELECT COUNT() AS n FROM devices WHERE tags.fwChannel = 'stable' AND properties.desired.firmware.version = '2.4.0'", 10)
	if string(items[0]) != `{"n":20}` {
		t.Errorf("patched twins: %s", items[0])
	}
	// Convergence: 18 of 20 canaries are online and not in the 10% converge-failure share... the shares
	// are independent, so count the devices that report and check against the stats.
	want := 0
	for i := range 20 {
		ds, _ := s.DeviceStats(emulator.GroupDeviceID(&emulator.Group{IDPrefix: "canary-", Count: 20}, i))
		if !ds.Offline && !ds.ConvergeFailure {
			want++
		}
	}
	// The reports come 100 ms after the patch; poll for them rather than guess how long a loaded
	// machine takes to deliver them.
	for deadline := time.Now().Add(5 * time.Second); ; {
		items, _, _ = queryAll(t, s, "SELECT COUNT() AS n FROM devices WHERE properties.reported.firmware.version = '2.4.0'", 10)
		if string(items[0]) == fmt.Sprintf(`{"n":%d}`, want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if string(items[0]) != fmt.Sprintf(`{"n":%d}`, want) || want < 15 || want > 18 {
		t.Errorf("converged: %s, want %d", items[0], want)
	}
}

func TestMethodJob(t *testing.T) {
	s := start(t, emulator.Options{})
	createJob(t, s, `{"jobId":"m-1","type":"scheduleDeviceMethod","queryCondition":"STARTSWITH(deviceId, 'canary-')",
		"cloudToDeviceMethod":{"methodName":"install","payload":{"v":1},"responseTimeoutInSeconds":30},"maxExecutionTimeInSeconds":60}`)
	jr := waitJob(t, s, "m-1", 5*time.Second)
	st := jr.DeviceJobStatistics
	// 2 of 20 offline fail with DeviceNotOnline; the 2 in the failure share answer 500 but the call
	// completed.
	if st.DeviceCount != 20 || st.FailedCount != 2 || st.SucceededCount != 18 {
		t.Errorf("stats %+v, want 20 devices, 2 failed", st)
	}
	items, _, _ := queryAll(t, s, "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'm-1' AND devices.jobs.status = 'failed'", 100)
	for _, it := range items {
		var row hubapi.DeviceJob
		_ = json.Unmarshal(it, &row)
		if row.Error == nil || row.Error.Code != "DeviceNotOnline" {
			t.Errorf("failed row %s: want DeviceNotOnline", it)
		}
	}
	items, _, _ = queryAll(t, s, "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'm-1' AND devices.jobs.status = 'completed'", 100)
	statuses := map[int32]int{}
	for _, it := range items {
		var row hubapi.DeviceJob
		_ = json.Unmarshal(it, &row)
		statuses[row.Outcome.DeviceMethodResponse.Status]++
	}
	want500 := 0
	for i := range 20 {
		ds, _ := s.DeviceStats(emulator.GroupDeviceID(&emulator.Group{IDPrefix: "canary-", Count: 20}, i))
		if ds.MethodFailure && !ds.Offline {
			want500++
		}
	}
	if statuses[200] != 18-want500 || statuses[500] != want500 || want500 == 0 {
		t.Errorf("method statuses %v, want %d×500 and the rest 200", statuses, want500)
	}
	total := 0
	for _, ds := range s.Stats().Device {
		total += ds.MethodInvocations
	}
	if total != 20 {
		t.Errorf("%d method invocations recorded, want 20", total)
	}
}

func TestJobLifecycle(t *testing.T) {
	s := start(t, emulator.Options{Tier: "S1"})
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	createJob(t, s, `{"jobId":"later","type":"scheduleDeviceMethod","queryCondition":"*","startTime":"`+future+`",
		"cloudToDeviceMethod":{"methodName":"m"}}`)
	awaitJobStatus(t, s, "later", "scheduled", 5*time.Second)
	if jr := getJob(t, s, "later"); jr.Status != "scheduled" {
		t.Errorf("future job is %s, want scheduled", jr.Status)
	}
	// S1 allows one active job.
	resp, body := do(t, s, "PUT", "/jobs/v2/second", `{"jobId":"second","type":"scheduleDeviceMethod","queryCondition":"*","cloudToDeviceMethod":{"methodName":"m"}}`)
	wantError(t, resp, body, 429, "ThrottlingMaxActiveJobCountExceeded")
	// A duplicate id is refused.
	resp, body = do(t, s, "PUT", "/jobs/v2/later", `{"jobId":"later","type":"scheduleDeviceMethod","queryCondition":"*","cloudToDeviceMethod":{"methodName":"m"}}`)
	wantError(t, resp, body, 409, "JobAlreadyExists")
	resp, body = do(t, s, "POST", "/jobs/v2/later/cancel", "")
	if resp.StatusCode != 200 {
		t.Fatalf("cancel: %d %s", resp.StatusCode, body)
	}
	var jr hubapi.JobResponse
	_ = json.Unmarshal(body, &jr)
	if jr.Status != "cancelled" {
		t.Errorf("cancel answered %s", jr.Status)
	}
	// An invalid condition is accepted, then the job fails.
	createJob(t, s, `{"jobId":"bad-cond","type":"scheduleUpdateTwin","queryCondition":"SELECT * FROM devices","updateTwin":{"etag":"*","tags":{"a":"b"}}}`)
	jr = waitJob(t, s, "bad-cond", 5*time.Second)
	if jr.Status != "failed" || jr.FailureReason == "" {
		t.Errorf("job with a bad condition ended %s (%q), want failed with a reason", jr.Status, jr.FailureReason)
	}
	// A running job refuses to be cancelled: 21 devices on S1 run at 10/s.
	createJob(t, s, `{"jobId":"running","type":"scheduleUpdateTwin","queryCondition":"tags.ring = 'canary' OR deviceId = 'Device-1'","updateTwin":{"etag":"*","tags":{"a":"b"}}}`)
	awaitJobStatus(t, s, "running", "running", 5*time.Second)
	resp, body = do(t, s, "POST", "/jobs/v2/running/cancel", "")
	wantError(t, resp, body, 400, "InvalidOperation")
	began := time.Now()
	jr = waitJob(t, s, "running", 10*time.Second)
	if jr.DeviceJobStatistics.SucceededCount != 21 {
		t.Errorf("running job stats %+v", jr.DeviceJobStatistics)
	}
	if el := time.Since(began); el < 800*time.Millisecond {
		t.Errorf("21 device operations at 10/s took %v, want about a second or more", el)
	}
	// Listing with filters, case-insensitively.
	list, typ, _ := queryAllJobs(t, s, "?jobType=ScheduleUpdateTwin&jobStatus=Completed", 100)
	if len(list) != 1 || typ != "JobResponse" {
		t.Errorf("listed %d (%s), want 1 completed twin job", len(list), typ)
	}
	all, _, pages := queryAllJobs(t, s, "", 1)
	if len(all) != 3 || pages != 3 {
		t.Errorf("listed %d jobs in %d pages, want 3 in 3", len(all), pages)
	}
	tl := s.Stats().Jobs
	if len(tl) < 8 {
		t.Errorf("timeline %+v", tl)
	}
}

func TestJobMaxExecutionTime(t *testing.T) {
	s := start(t, emulator.Options{Tier: "S1"})
	// 120 devices at 10/s cannot finish in 1 s: those not reached fail with JobExecutionTimeout.
	createJob(t, s, `{"jobId":"short","type":"scheduleUpdateTwin","queryCondition":"*","maxExecutionTimeInSeconds":1,"updateTwin":{"etag":"*","tags":{"a":"b"}}}`)
	jr := waitJob(t, s, "short", 5*time.Second)
	st := jr.DeviceJobStatistics
	if jr.Status != "completed" || st.SucceededCount < 5 || st.SucceededCount > 30 || st.FailedCount != st.DeviceCount-st.SucceededCount {
		t.Errorf("job %s %+v: want some succeeded, the rest failed", jr.Status, st)
	}
	items, _, _ := queryAll(t, s, "SELECT * FROM devices.jobs WHERE devices.jobs.status = 'failed'", 100)
	var row hubapi.DeviceJob
	_ = json.Unmarshal(items[0], &row)
	if row.Error == nil || row.Error.Code != emulator.DeviceJobErrorTimeout {
		t.Errorf("row %s: want %s", items[0], emulator.DeviceJobErrorTimeout)
	}
}

func queryAllJobs(tb testing.TB, s *emulator.Server, filter string, pageSize int) ([]json.RawMessage, string, int) {
	tb.Helper()
	var all []json.RawMessage
	token, typ, pages := "", "", 0
	for {
		hdr := []string{"x-ms-max-item-count", fmt.Sprint(pageSize)}
		if token != "" {
			hdr = append(hdr, "x-ms-continuation", token)
		}
		resp, b := do(tb, s, "GET", "/jobs/v2/query"+filter, "", hdr...)
		if resp.StatusCode != 200 {
			tb.Fatalf("list jobs: %d %s", resp.StatusCode, b)
		}
		var items []json.RawMessage
		if err := json.Unmarshal(b, &items); err != nil {
			tb.Fatal(err)
		}
		pages++
		all = append(all, items...)
		typ = resp.Header.Get("x-ms-item-type")
		token = resp.Header.Get("x-ms-continuation")
		if token == "" {
			return all, typ, pages
		}
	}
}
