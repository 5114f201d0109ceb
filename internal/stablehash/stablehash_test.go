package stablehash

import (
	"hash/fnv"
	"testing"
)

// TestIsFNV1a checks that the hash before finalizing is hash/fnv's FNV-1a: stored samples and
// emulated fleets depend on the exact values.
func TestIsFNV1a(t *testing.T) {
	for _, in := range []string{"", "a", "canary-0001", "thermostat-fw\x00eu-0042"} {
		f := fnv.New64a()
		f.Write([]byte(in))
		if got := uint64(New().String(in)); got != f.Sum64() {
			t.Errorf("%q: %x, want FNV-1a %x", in, got, f.Sum64())
		}
		if New().String(in) != New().Bytes([]byte(in)) {
			t.Errorf("%q: String and Bytes differ", in)
		}
	}
	// The finalizer spreads ids that differ in their last digit over the whole range: their top bits
	// differ (raw FNV-1a values of such ids share them).
	a, b := New().String("dev-0001").Sum(), New().String("dev-0002").Sum()
	if a>>60 == b>>60 && a>>56 == b>>56 {
		t.Errorf("Sum(dev-0001) = %x and Sum(dev-0002) = %x share their top byte", a, b)
	}
}

func TestSumAllocatesNothing(t *testing.T) {
	id := "device-000123"
	if n := testing.AllocsPerRun(100, func() { _ = New().String("name").Byte(0).String(id).Sum() }); n != 0 {
		t.Errorf("%v allocations a hash", n)
	}
}
