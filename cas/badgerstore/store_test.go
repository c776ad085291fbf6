package badgerstore

import (
	"testing"

	"github.com/mound-build/mound/cas/storetest"
)

// testInline keeps the large-blob path cheap to reach in tests.
const testInline = 64 << 10

func openTest(t *testing.T, dir string, maxSize int64) *Store {
	t.Helper()
	s, err := Open(Options{Dir: dir, MaxSize: maxSize, InlineLimit: testInline})
	if err != nil {
		t.Fatalf("Open %s: %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store { return openTest(t, t.TempDir(), 0) }, 3*testInline)
}
