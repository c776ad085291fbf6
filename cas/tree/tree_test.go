package tree

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/cas/memstore"
	"github.com/mound-build/mound/cas/storetest"
)

// newCountingStore returns an empty memstore that counts what is sent to it.
func newCountingStore() *storetest.CountingStore {
	return storetest.NewCountingStore(memstore.New())
}

// largeSize is above smallFileBytes and above a mound server's batch limit.
const largeSize = 5 << 20

// makeTree fills dir with nested directories, executables, symlinks, empty
// files and directories, repeated content and a large file.
func makeTree(t *testing.T, dir string) {
	t.Helper()
	large := storetest.Random(largeSize)
	files := []struct {
		path string
		data []byte
		mode fs.FileMode
	}{
		{"README", []byte("hello\n"), 0o644},
		{"bin/tool", []byte("#!/bin/sh\necho tool\n"), 0o755},
		{"src/a/b/c/deep.c", []byte("int deep;\n"), 0o644},
		{"src/a/same.txt", []byte("same content\n"), 0o644},
		{"src/same.txt", []byte("same content\n"), 0o755},
		{"src/empty", nil, 0o644},
		{"data/large.bin", large, 0o644},
		{"data/copy.bin", large, 0o644},
		{"data/medium.bin", storetest.Random(smallFileBytes + 1), 0o644},
		{"data/small.bin", storetest.Random(smallFileBytes), 0o644},
	}
	for _, f := range files {
		p := filepath.Join(dir, f.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.data, f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"empty-dir", "src/a/empty"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{"link-to-readme": "README", "src/a/up": "../../bin/tool", "abs": "/nonexistent/target", "dangling": "nope"}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	ctx := storetest.Context(t)
	src := t.TempDir()
	makeTree(t, src)
	s := newCountingStore()

	stats, err := Upload(ctx, s, src)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Files != 10 || stats.Symlinks != 4 || stats.Dirs != 9 {
		t.Errorf("stats %+v: want 10 files, 4 symlinks, 9 directories", stats)
	}
	sent := s.Take()
	if sent.FindMissingCalls != 1 {
		t.Errorf("%d FindMissing calls, want 1", sent.FindMissingCalls)
	}
	// Large and medium files stream from disk; one copy of repeated content.
	if len(sent.Puts) != 2 || sent.PutsFromFile != 2 {
		t.Errorf("%d Puts (%d from files), want 2 streamed from files", len(sent.Puts), sent.PutsFromFile)
	}
	if got := len(sent.Sent()); got != stats.Uploaded {
		t.Errorf("%d blobs sent, stats say %d", got, stats.Uploaded)
	}
	if sent.Batched[len(sent.Batched)-1] != stats.Root {
		t.Error("root Directory not sent last")
	}

	// Nothing is missing the second time.
	again, err := Upload(ctx, s, src)
	if err != nil {
		t.Fatal(err)
	}
	sent = s.Take()
	if again.Root != stats.Root || again.Uploaded != 0 || len(sent.Sent()) != 0 {
		t.Errorf("second upload: root %v (first %v), sent %d+%d blobs", again.Root, stats.Root, len(sent.Puts), len(sent.Batched))
	}

	// One changed file: that file, its directory and the root.
	changed := []byte("int deep = 2;\n")
	if err := os.WriteFile(filepath.Join(src, "src/a/b/c/deep.c"), changed, 0o644); err != nil {
		t.Fatal(err)
	}
	third, err := Upload(ctx, s, src)
	if err != nil {
		t.Fatal(err)
	}
	sent = s.Take()
	if len(sent.Puts) != 0 || len(sent.Batched) != 6 || !slices.Contains(sent.Batched, digest.OfBytes(changed)) {
		t.Errorf("after changing one file 4 levels down, sent %v by Put and %d blobs in batches; want the file and 5 Directory messages", sent.Puts, len(sent.Batched))
	}

	dst := filepath.Join(t.TempDir(), "out")
	if err := Download(ctx, s, third.Root, dst); err != nil {
		t.Fatal(err)
	}
	storetest.CompareTrees(t, src, dst)
}

func TestUploadEmptyDir(t *testing.T) {
	ctx := storetest.Context(t)
	s := newCountingStore()
	stats, err := Upload(ctx, s, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if stats.Root != digest.Empty || stats.Uploaded != 0 {
		t.Errorf("empty directory: %+v; want the empty digest, nothing uploaded", stats)
	}
	dst := t.TempDir() // an existing empty directory is a valid target
	if err := Download(ctx, s, stats.Root, dst); err != nil {
		t.Fatal(err)
	}
}

func TestUploadRefusesSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Upload(storetest.Context(t), newCountingStore(), dir); err == nil {
		t.Fatal("Upload of a directory with a fifo succeeded")
	}
}

func TestFiles(t *testing.T) {
	ctx := storetest.Context(t)
	s := newCountingStore()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	data := storetest.Random(smallFileBytes * 2)
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := UploadFile(ctx, s, src)
	if err != nil || d != digest.OfBytes(data) {
		t.Fatalf("UploadFile = %v, %v; want %v", d, err, digest.OfBytes(data))
	}
	if sent := s.Take(); len(sent.Puts) != 1 || sent.PutsFromFile != 1 {
		t.Errorf("UploadFile: %d Puts, %d from the file; want 1 streamed", len(sent.Puts), sent.PutsFromFile)
	}
	if _, err := UploadFile(ctx, s, src); err != nil {
		t.Fatal(err)
	}
	if sent := s.Take(); len(sent.Puts) != 0 {
		t.Error("UploadFile sent a blob the store has")
	}
	if _, err := UploadFile(ctx, s, dir); err == nil {
		t.Error("UploadFile of a directory succeeded")
	}

	dst := filepath.Join(dir, "dst")
	if err := os.WriteFile(dst, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := DownloadFile(ctx, s, d, dst, 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dst)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("downloaded %d bytes, %v", len(got), err)
	}
	if info, _ := os.Stat(dst); info.Mode().Perm() != 0o755 {
		t.Errorf("mode %v, want 0755", info.Mode())
	}
	missing := digest.OfBytes([]byte("absent"))
	if err := DownloadFile(ctx, s, missing, filepath.Join(dir, "absent"), 0o644); err == nil {
		t.Error("DownloadFile of an absent blob succeeded")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("directory holds %d entries after downloads, want 2 (no temporary files left)", len(entries))
	}
}
