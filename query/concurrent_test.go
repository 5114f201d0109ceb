package query

import (
	"sync"
	"testing"
)

// TestMatchConcurrent shares one Matcher between goroutines, as the emulator does for a job's
// condition; run with -race.
func TestMatchConcurrent(t *testing.T) {
	m := Compile(mustParse(t, benchCondition+" OR deviceId IN ['a', 'b']"))
	var wg sync.WaitGroup
	counts := make([]int, 4)
	for g := range counts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				if m.Match(benchTwin(i)) {
					counts[g]++
				}
			}
		}()
	}
	wg.Wait()
	for g, n := range counts {
		if n != counts[0] || n == 0 {
			t.Fatalf("goroutine %d matched %d twins, goroutine 0 %d", g, n, counts[0])
		}
	}
}
