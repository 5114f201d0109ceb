//go:build !unix

package engine_test

// maxRSS is not measured here.
func maxRSS() int64 { return 0 }
