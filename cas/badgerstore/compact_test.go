package badgerstore

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/cas/storetest"
)

func packDirBytes(t *testing.T, dir string) int64 {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "packs"))
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		n += info.Size()
	}
	return n
}

// TestCompactionReclaimsPackSpace writes many times a bounded store's size
// in small blobs while keeping some in use, and checks that pack files on
// disk stay within the bound, that kept blobs survive compaction moving
// them, and that all of it reopens intact.
func TestCompactionReclaimsPackSpace(t *testing.T) {
	const maxSize = 2 << 20
	dir := t.TempDir()
	s := openTest(t, dir, maxSize)
	kept := map[digest.Digest][]byte{}
	for i := 0; i < 600; i++ {
		data := storetest.Random(8 << 10)
		d := putBlob(t, s, data)
		if i%20 == 0 {
			kept[d] = data
		}
		for k := range kept {
			present(t, s, k) // in use: never evicted
		}
		if n := packDirBytes(t, dir); n > maxSize {
			t.Fatalf("after %d puts pack files take %d bytes, over the store's %d", i+1, n, maxSize)
		}
	}
	if _, size := s.Stats(); size > maxSize {
		t.Fatalf("store reports %d bytes, over %d", size, maxSize)
	}
	for d, data := range kept {
		storetestGet(t, s, d, data)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir, maxSize)
	for d, data := range kept {
		storetestGet(t, s, d, data)
	}
}
