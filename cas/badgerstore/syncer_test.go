package badgerstore

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestSyncerWritesEverything writes several syncEvery's worth in odd-sized
// pieces, so that background syncs run between writes, and checks the file
// holds exactly what was written once sync returned.
func TestSyncerWritesEverything(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "blob"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := newSyncer(f)
	defer w.stop()
	var want bytes.Buffer
	piece := make([]byte, 3<<20+7)
	for i := 0; want.Len() < 3*syncEvery; i++ {
		for j := range piece {
			piece[j] = byte(i + j)
		}
		if _, err := w.Write(piece); err != nil {
			t.Fatal(err)
		}
		want.Write(piece)
	}
	if err := w.sync(); err != nil {
		t.Fatal(err)
	}
	w.stop() // a second stop does nothing
	got, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("file holds %d bytes, not the %d written", len(got), want.Len())
	}
}
