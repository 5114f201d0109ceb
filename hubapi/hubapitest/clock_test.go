package hubapitest

import (
	"testing"
	"time"
)

func TestManualClock(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := NewClock(start)
	a := c.After(2 * time.Second)
	b := c.After(time.Second)
	if !c.BlockUntil(2, time.Second) || c.Pending() != 2 {
		t.Fatalf("pending %d, want 2", c.Pending())
	}
	c.Advance(time.Second)
	select {
	case got := <-b:
		if !got.Equal(start.Add(time.Second)) {
			t.Errorf("b fired at %v", got)
		}
	default:
		t.Fatal("b did not fire at 1s")
	}
	select {
	case <-a:
		t.Fatal("a fired early")
	default:
	}
	c.Advance(time.Second)
	<-a
	if w := c.Waits(); len(w) != 2 || w[0] != 2*time.Second || w[1] != time.Second {
		t.Errorf("waits %v", w)
	}
	if c.BlockUntil(1, 10*time.Millisecond) {
		t.Error("BlockUntil with nothing pending returned true")
	}
}

func TestAutoClock(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := NewAutoClock(start)
	if got := <-c.After(3 * time.Second); !got.Equal(start.Add(3 * time.Second)) {
		t.Errorf("After delivered %v", got)
	}
	<-c.After(0)
	if !c.Now().Equal(start.Add(3*time.Second)) || c.Pending() != 0 {
		t.Errorf("now %v pending %d", c.Now(), c.Pending())
	}
}

func TestSwaggerLoads(t *testing.T) {
	s := LoadSwagger(t, "")
	if err := s.Validate("JobRequest", []byte(`{"jobId":"j","type":"scheduleDeviceMethod","queryCondition":"*","startTime":"2026-01-01T00:00:00Z"}`)); err != nil {
		t.Errorf("valid JobRequest: %v", err)
	}
	if err := s.Validate("JobRequest", []byte(`{"jobId":"j","extra":1}`)); err == nil {
		t.Error("an undeclared property passed")
	}
	if err := s.Validate("Twin", []byte(`{"tags":{"building":"43"},"properties":{"desired":{"n":1,"s":"x"}}}`)); err != nil {
		t.Errorf("string tags and scalar desired values must pass (swagger correction): %v", err)
	}
}
