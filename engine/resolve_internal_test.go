package engine

import (
	"slices"
	"testing"
)

// TestInterleave checks that a wave over several hubs takes every hub's devices in proportion at
// every prefix, keeps each hub's order, and loses or repeats none.
func TestInterleave(t *testing.T) {
	got := interleave([][]string{{"eu/a", "eu/b", "eu/c", "eu/d"}, {"us/a", "us/b"}})
	want := []string{"eu/a", "us/a", "eu/b", "eu/c", "us/b", "eu/d"}
	if !slices.Equal(got, want) {
		t.Errorf("interleave = %v, want %v", got, want)
	}
	if got := interleave([][]string{nil, {"us/a"}}); !slices.Equal(got, []string{"us/a"}) {
		t.Errorf("with an empty hub: %v", got)
	}
}
