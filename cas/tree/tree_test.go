package tree

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/cas/memstore"
	"github.com/mound-build/mound/cas/storetest"
)

// testTimeout bounds each test: generous on a loaded machine, short enough
// that a hang fails the test rather than the whole run.
const testTimeout = 60 * time.Second

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// countingStore is a memstore that records what is sent to it.
type countingStore struct {
	*memstore.Store
	mu        sync.Mutex
	puts      []digest.Digest // through Put; guarded by mu
	fromFile  int             // Puts whose reader was an *os.File; guarded by mu
	batched   []digest.Digest // through PutBatch; guarded by mu
	findCalls int             // guarded by mu
}

func newCountingStore() *countingStore { return &countingStore{Store: memstore.New()} }

func (s *countingStore) Put(ctx context.Context, d digest.Digest, r io.Reader) error {
	s.mu.Lock()
	s.puts = append(s.puts, d)
	if _, ok := r.(*os.File); ok {
		s.fromFile++
	}
	s.mu.Unlock()
	return s.Store.Put(ctx, d, r)
}

func (s *countingStore) PutBatch(ctx context.Context, blobs []cas.Blob) []error {
	errs := make([]error, len(blobs))
	for i, b := range blobs {
		s.mu.Lock()
		s.batched = append(s.batched, b.Digest)
		s.mu.Unlock()
		errs[i] = s.Store.Put(ctx, b.Digest, bytes.NewReader(b.Data))
	}
	return errs
}

func (s *countingStore) FindMissing(ctx context.Context, ds []digest.Digest) ([]digest.Digest, error) {
	s.mu.Lock()
	s.findCalls++
	s.mu.Unlock()
	return s.Store.FindMissing(ctx, ds)
}

// sent returns and forgets what was stored since the last call.
func (s *countingStore) sent() (puts, batched []digest.Digest, fromFile, findCalls int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	puts, batched, fromFile, findCalls = s.puts, s.batched, s.fromFile, s.findCalls
	s.puts, s.batched, s.fromFile, s.findCalls = nil, nil, 0, 0
	return
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

// compareTrees fails t unless a and b hold the same entries, content,
// executable bits and symlink targets.
func compareTrees(t *testing.T, a, b string) {
	t.Helper()
	list := func(root string) map[string]string {
		out := map[string]string{}
		err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			info, err := e.Info()
			if err != nil {
				return err
			}
			switch {
			case e.Type()&fs.ModeSymlink != 0:
				target, err := os.Readlink(p)
				if err != nil {
					return err
				}
				out[rel] = "symlink " + target
			case e.IsDir():
				out[rel] = "dir"
			default:
				data, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				out[rel] = info.Mode().Perm().String() + " " + digest.OfBytes(data).String()
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	la, lb := list(a), list(b)
	for p, v := range la {
		if lb[p] != v {
			t.Errorf("%s: %q in %s, %q in %s", p, v, a, lb[p], b)
		}
	}
	for p, v := range lb {
		if _, ok := la[p]; !ok {
			t.Errorf("%s: only in %s (%q)", p, b, v)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	ctx := testContext(t)
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
	puts, batched, fromFile, finds := s.sent()
	if finds != 1 {
		t.Errorf("%d FindMissing calls, want 1", finds)
	}
	// Large and medium files stream from disk; one copy of repeated content.
	if len(puts) != 2 || fromFile != 2 {
		t.Errorf("%d Puts (%d from files), want 2 streamed from files", len(puts), fromFile)
	}
	if got := len(puts) + len(batched); got != stats.Uploaded {
		t.Errorf("%d blobs sent, stats say %d", got, stats.Uploaded)
	}
	if batched[len(batched)-1] != stats.Root {
		t.Error("root Directory not sent last")
	}

	// Nothing is missing the second time.
	again, err := Upload(ctx, s, src)
	if err != nil {
		t.Fatal(err)
	}
	puts, batched, _, _ = s.sent()
	if again.Root != stats.Root || again.Uploaded != 0 || len(puts)+len(batched) != 0 {
		t.Errorf("second upload: root %v (first %v), sent %d+%d blobs", again.Root, stats.Root, len(puts), len(batched))
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
	puts, batched, _, _ = s.sent()
	if len(puts) != 0 || len(batched) != 6 || !slices.Contains(batched, digest.OfBytes(changed)) {
		t.Errorf("after changing one file 4 levels down, sent %v by Put and %d blobs in batches; want the file and 5 Directory messages", puts, len(batched))
	}

	dst := filepath.Join(t.TempDir(), "out")
	if err := Download(ctx, s, third.Root, dst); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, src, dst)
}

func TestUploadEmptyDir(t *testing.T) {
	ctx := testContext(t)
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
	if _, err := Upload(testContext(t), newCountingStore(), dir); err == nil {
		t.Fatal("Upload of a directory with a fifo succeeded")
	}
}

func TestFiles(t *testing.T) {
	ctx := testContext(t)
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
	if puts, _, fromFile, _ := s.sent(); len(puts) != 1 || fromFile != 1 {
		t.Errorf("UploadFile: %d Puts, %d from the file; want 1 streamed", len(puts), fromFile)
	}
	if _, err := UploadFile(ctx, s, src); err != nil {
		t.Fatal(err)
	}
	if puts, _, _, _ := s.sent(); len(puts) != 0 {
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
