// Package stablehash is the deterministic 64-bit hash that rollout draws stable choices from: which
// devices a percent wave samples, and which simulated devices the emulator makes offline or failing.
// It is FNV-1a (as hash/fnv's New64a) followed by the splitmix64 finalizer: FNV alone mixes its last
// bytes poorly, so ids that differ only in their last digits would land close together. The same
// input gives the same value on every machine and in every release; changing it would change every
// stored sample and every emulated fleet.
package stablehash

// Hash is a hash in progress; the zero value is not a valid start, use New. It is a value, so
// hashing allocates nothing.
type Hash uint64

const (
	offset64 = 14695981039346656037
	prime64  = 1099511628211
)

// New starts a hash.
func New() Hash { return offset64 }

// Byte adds one byte.
func (h Hash) Byte(c byte) Hash { return (h ^ Hash(c)) * prime64 }

// Bytes adds b.
func (h Hash) Bytes(b []byte) Hash {
	for _, c := range b {
		h = h.Byte(c)
	}
	return h
}

// String adds the bytes of s.
func (h Hash) String(s string) Hash {
	for i := 0; i < len(s); i++ {
		h = h.Byte(s[i])
	}
	return h
}

// Sum finalizes the hash, spreading every input bit over the result.
func (h Hash) Sum() uint64 {
	x := uint64(h)
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
