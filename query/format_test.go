package query

import "testing"

func TestFormatInAndSplitIn(t *testing.T) {
	ids := []string{"a", "b'c", "device-0001", `quote"d`, "x"}
	if got, want := FormatIn("deviceId", ids), Format(In("deviceId", ids)); got != want {
		t.Errorf("FormatIn = %s, want Format's %s", got, want)
	}
	for max := 10; max < 80; max++ {
		ranges := SplitIn("deviceId", ids, max)
		next := 0
		for _, rg := range ranges {
			if rg[0] != next || rg[1] <= rg[0] {
				t.Fatalf("max %d: ranges %v do not cover the ids in order", max, ranges)
			}
			next = rg[1]
			if n := len(FormatIn("deviceId", ids[rg[0]:rg[1]])); n > max && rg[1]-rg[0] > 1 {
				t.Errorf("max %d: range %v is %d characters", max, rg, n)
			}
		}
		if next != len(ids) {
			t.Fatalf("max %d: ranges %v end at %d", max, ranges, next)
		}
		if len(ranges) > 1 {
			// Ranges are as long as they can be: the next id would not have fitted.
			for _, rg := range ranges[:len(ranges)-1] {
				if n := len(FormatIn("deviceId", ids[rg[0]:rg[1]+1])); n <= max {
					t.Errorf("max %d: range %v could take one more id (%d characters)", max, rg, n)
				}
			}
		}
	}
}
