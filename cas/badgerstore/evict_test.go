package badgerstore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/cas/storetest"
)

func putBlob(t *testing.T, s *Store, data []byte) digest.Digest {
	t.Helper()
	d := digest.OfBytes(data)
	if err := s.Put(context.Background(), d, bytes.NewReader(data)); err != nil {
		t.Fatalf("Put: %v", err)
	}
	return d
}

func present(t *testing.T, s *Store, ds ...digest.Digest) []bool {
	t.Helper()
	missing, err := s.FindMissing(context.Background(), ds)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]bool, len(ds))
	for i, d := range ds {
		out[i] = true
		for _, m := range missing {
			if m == d {
				out[i] = false
			}
		}
	}
	return out
}

// TestEvictionKeepsUnderMaxSize fills a store to several times its limit
// with small and large blobs and checks it stays under the limit, evicting
// the least recently used first.
func TestEvictionKeepsUnderMaxSize(t *testing.T) {
	const blob = 40 << 10 // inline
	const large = 100 << 10
	maxSize := int64(10 * (blob + entryOverhead))
	dir := t.TempDir()
	s := openTest(t, dir, maxSize)
	var ds []digest.Digest
	for i := 0; i < 40; i++ {
		size := blob
		if i%5 == 0 {
			size = large
		}
		ds = append(ds, putBlob(t, s, storetest.Random(size)))
		if _, total := s.Stats(); total > maxSize {
			t.Fatalf("after %d puts the store holds %d bytes, over its maximum %d", i+1, total, maxSize)
		}
		// Keep the first blob in use: it must survive.
		present(t, s, ds[0])
	}
	got := present(t, s, ds...)
	if !got[0] {
		t.Error("the blob used after every put was evicted")
	}
	if got[1] || got[2] {
		t.Error("old unused blobs were not evicted")
	}
	if !got[len(ds)-1] || !got[len(ds)-2] {
		t.Error("the newest blobs were evicted")
	}
	// Evicted large blobs leave no file behind.
	files, err := s.scanFiles()
	if err != nil {
		t.Fatal(err)
	}
	for p := range files {
		var h digest.Hash
		name := filepath.Base(p)
		for _, d := range ds {
			if d.Hash.String() == name {
				h = d.Hash
			}
		}
		if el := s.index.byHash[h]; el == nil {
			t.Errorf("file %s of an evicted blob is still on disk", p)
		}
	}
	if s.Evictions() == 0 {
		t.Error("eviction counter did not move")
	}
}

// TestEvictionNeverLeavesAHitWithMissingBlobs checks the contract Bazel
// depends on: an action cache entry is a hit only while all its outputs are
// stored, and a hit keeps them from being evicted.
func TestEvictionNeverLeavesAHitWithMissingBlobs(t *testing.T) {
	const blob = 30 << 10
	s := openTest(t, t.TempDir(), int64(8*(blob+entryOverhead)))
	ac := cas.CompleteActionCache{ActionCache: s, Blobs: s}
	ctx := context.Background()
	out, errOut := putBlob(t, s, storetest.Random(blob)), putBlob(t, s, storetest.Random(blob))
	result := &repb.ActionResult{
		OutputFiles:  []*repb.OutputFile{{Path: "out/a.o", Digest: out.Proto()}},
		StderrDigest: errOut.Proto(),
	}
	kept := cas.ActionKey{Action: digest.OfBytes([]byte("kept action"))}
	if err := s.UpdateActionResult(ctx, kept, result); err != nil {
		t.Fatal(err)
	}
	forgotten := cas.ActionKey{Action: digest.OfBytes([]byte("forgotten action"))}
	other := putBlob(t, s, storetest.Random(blob))
	if err := s.UpdateActionResult(ctx, forgotten, &repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "b", Digest: other.Proto()}}}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 30; i++ {
		putBlob(t, s, storetest.Random(blob))
		// A build that keeps hitting the kept action keeps its outputs.
		if _, err := ac.GetActionResult(ctx, kept); err != nil {
			t.Fatalf("after %d puts the used entry is a miss: %v", i, err)
		}
	}
	if _, err := ac.GetActionResult(ctx, forgotten); !errors.Is(err, cas.ErrNotFound) {
		t.Fatalf("entry whose output was evicted: %v, want a miss", err)
	}
}

func TestBlobLargerThanStoreIsRefused(t *testing.T) {
	s := openTest(t, t.TempDir(), 1000)
	data := storetest.Random(2000)
	err := s.Put(context.Background(), digest.OfBytes(data), bytes.NewReader(data))
	if !errors.Is(err, cas.ErrFull) {
		t.Fatalf("Put of a blob over the maximum size: %v, want ErrFull", err)
	}
}

// TestReopen checks that blobs, AC entries and LRU survive a restart and
// that what a crash can leave (a temporary file, a blob file whose metadata
// was never committed) is cleaned away.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, InlineLimit: testInline})
	if err != nil {
		t.Fatal(err)
	}
	small, large := storetest.Random(1000), storetest.Random(3*testInline)
	ds, dl := putBlob(t, s, small), putBlob(t, s, large)
	key := cas.ActionKey{Instance: "x", Action: ds}
	if err := s.UpdateActionResult(context.Background(), key, &repb.ActionResult{ExitCode: 7}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	orphan := digest.OfBytes([]byte("never committed"))
	orphanPath := filepath.Join(dir, "blobs", orphan.Hash.String()[:2], orphan.Hash.String())
	os.MkdirAll(filepath.Dir(orphanPath), 0o700)
	os.WriteFile(orphanPath, []byte("never committed"), 0o600)
	os.WriteFile(filepath.Join(dir, "tmp", "upload-123"), []byte("half"), 0o600)

	s = openTest(t, dir, 0)
	if got := present(t, s, ds, dl, orphan); !got[0] || !got[1] || got[2] {
		t.Fatalf("after reopen, present = %v; want small and large present, orphan absent", got)
	}
	storetestGet(t, s, ds, small)
	storetestGet(t, s, dl, large)
	if r, err := s.GetActionResult(context.Background(), key); err != nil || r.GetExitCode() != 7 {
		t.Fatalf("AC after reopen: %v, %v", r, err)
	}
	if _, err := os.Stat(orphanPath); !os.IsNotExist(err) {
		t.Error("orphaned blob file was not removed")
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(entries) != 0 {
		t.Errorf("tmp/ not emptied: %v", entries)
	}
}

func storetestGet(t *testing.T, s *Store, d digest.Digest, want []byte) {
	t.Helper()
	b, err := cas.ReadAll(context.Background(), s, d)
	if err != nil || !bytes.Equal(b, want) {
		t.Fatalf("read %v: %d bytes, %v", d, len(b), err)
	}
}
