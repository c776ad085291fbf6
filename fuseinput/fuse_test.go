//go:build linux

package fuseinput

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"golang.org/x/sys/unix"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/cas/memstore"
	"github.com/mound-build/mound/cas/tree"
	"github.com/mound-build/mound/workerd/blobcache"
)

// env is an FS over an in-memory CAS with a real local blob cache.
type env struct {
	store   *memstore.Store
	fetched *counting // the cache's fetches from the CAS
	cache   *blobcache.Cache
	fs      *FS
	// mounted says a tree was mounted; sawPassthrough that one of them
	// had passthrough.
	mounted, sawPassthrough bool
}

// counting is a BlobGetter that counts the blobs read through it; files
// counts only those of files (the contents given to env.upload), not
// Directory messages.
type counting struct {
	cas.BlobGetter
	mu       sync.Mutex
	n        int                   // guarded by mu
	contents map[digest.Digest]int // reads of file contents; guarded by mu
	isFile   map[digest.Digest]bool
}

func (c *counting) Get(ctx context.Context, d digest.Digest, off int64) (io.ReadCloser, error) {
	c.mu.Lock()
	c.n++
	if c.isFile[d] {
		c.contents[d]++
	}
	c.mu.Unlock()
	return c.BlobGetter.Get(ctx, d, off)
}

// reads counts every blob read.
func (c *counting) reads() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// files counts the reads of file contents.
func (c *counting) files() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, k := range c.contents {
		n += k
	}
	return n
}

// markFiles tells the counter which digests are file contents.
func (c *counting) markFiles(ds ...digest.Digest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.isFile == nil {
		c.isFile, c.contents = map[digest.Digest]bool{}, map[digest.Digest]int{}
	}
	for _, d := range ds {
		c.isFile[d] = true
	}
}

// quiet discards logs; the tests check what matters themselves.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// modes runs test once with the kernel reading files through this process
// and once with passthrough.
func modes(t *testing.T, test func(t *testing.T, e *env)) {
	for _, pass := range []bool{false, true} {
		t.Run(fmt.Sprintf("passthrough=%v", pass), func(t *testing.T) {
			e := newEnv(t, pass)
			test(t, e)
			if pass && e.mounted && !e.sawPassthrough {
				t.Error("passthrough was asked for but no mount had it (the kernel is 6.9 or later and the tests run as root)")
			}
		})
	}
}

func newEnv(t testing.TB, passthrough bool) *env {
	t.Helper()
	e := &env{store: memstore.New()}
	e.fetched = &counting{BlobGetter: e.store}
	e.fetched.markFiles()
	var err error
	e.cache, err = blobcache.Open(blobcache.Options{Dir: t.TempDir(), MaxBytes: 1 << 30, Remote: e.fetched, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	e.fs, err = New(Options{Directories: e.fetched, Files: e.cache, Passthrough: passthrough, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.fs.Close)
	return e
}

// upload stores the tree of files (name: content; a name ending in "*" is
// executable, "->" makes a symlink, "/" a directory) and returns its root.
func (e *env) upload(t testing.TB, files map[string]string) digest.Digest {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, "*") {
			name, mode = strings.TrimSuffix(name, "*"), 0o755
		}
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasSuffix(name, "/"):
			err := os.MkdirAll(p, 0o755)
			if err != nil {
				t.Fatal(err)
			}
		case strings.HasPrefix(content, "->"):
			if err := os.Symlink(strings.TrimPrefix(content, "->"), p); err != nil {
				t.Fatal(err)
			}
		default:
			if err := writeFile(p, []byte(content), mode); err != nil {
				t.Fatal(err)
			}
			e.fetched.markFiles(digest.OfBytes([]byte(content)))
		}
	}
	st, err := tree.Upload(context.Background(), e.store, dir)
	if err != nil {
		t.Fatal(err)
	}
	return st.Root
}

// uploadDir stores a root Directory of files already in the store.
func (e *env) uploadDir(t testing.TB, files map[string]digest.Digest) digest.Digest {
	t.Helper()
	dir := &repb.Directory{}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		dir.Files = append(dir.Files, &repb.FileNode{Name: name, Digest: files[name].Proto()})
	}
	b, d, err := digest.OfMessage(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.Put(context.Background(), d, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	return d
}

// mount mounts the tree of root at a new directory the way the sandbox
// does (an fd= mount of /dev/fuse, then Serve), here in the test's own
// namespaces, and unmounts it at cleanup, checking that the server ended.
func (e *env) mount(t testing.TB, root digest.Digest, prefetch ...string) (*Tree, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the FUSE tests mount file systems: run them as root (make test does, in CI)")
	}
	tr, err := e.fs.NewTree(context.Background(), TreeOptions{Root: root, Upper: t.TempDir(), Prefetch: prefetch})
	if err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	dev, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("open /dev/fuse: %v", err)
	}
	opts := fmt.Sprintf("fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other,default_permissions", dev.Fd())
	if err := unix.Mount("mound", mnt, "fuse.mound", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		dev.Close()
		t.Fatalf("mount FUSE at %s: %v", mnt, err)
	}
	if err := tr.Serve(dev); err != nil {
		unix.Unmount(mnt, unix.MNT_DETACH)
		dev.Close()
		t.Fatal(err)
	}
	e.mounted = true
	e.sawPassthrough = e.sawPassthrough || tr.Passthrough()
	// A file system that stops answering hangs its callers in the
	// kernel; abort the connection then, so that the test fails instead
	// of hanging the suite.
	var st unix.Stat_t
	if err := unix.Stat(mnt, &st); err != nil {
		t.Fatal(err)
	}
	watchdog := time.AfterFunc(hangLimit, func() { abortConnection(st.Dev) })
	t.Cleanup(func() {
		if !watchdog.Stop() {
			t.Errorf("the FUSE connection of %s was aborted: it stopped answering for %v", mnt, hangLimit)
		}
		if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
		dev.Close()
		if err := tr.Close(); err != nil {
			t.Error(err)
		}
	})
	return tr, mnt
}

// hangLimit is far beyond what any of these tests takes.
const hangLimit = 2 * time.Minute

// abortConnection aborts the FUSE connection of the mount on dev.
func abortConnection(dev uint64) {
	dir := "/sys/fs/fuse/connections"
	if _, err := os.Stat(dir + "/" + fmt.Sprint(unix.Minor(dev))); err != nil {
		unix.Mount("fusectl", dir, "fusectl", 0, "")
	}
	os.WriteFile(fmt.Sprintf("%s/%d/abort", dir, unix.Minor(dev)), []byte("1"), 0)
}

// readFile and writeFile stand for os.ReadFile and os.WriteFile on the
// mount: a process that serves FUSE must not let the Go runtime's poller
// register files of its own mount (see openFile).
func readFile(name string) ([]byte, error) {
	f, err := openFile(name, os.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

func writeFile(name string, b []byte, perm os.FileMode) error {
	fd, err := syscall.Open(name, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_TRUNC|syscall.O_CLOEXEC, uint32(perm))
	if err != nil {
		return &os.PathError{Op: "open", Path: name, Err: err}
	}
	f := os.NewFile(uintptr(fd), name)
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func TestReadsFetchOnlyWhatIsRead(t *testing.T) { modes(t, testReadsFetchOnlyWhatIsRead) }

func testReadsFetchOnlyWhatIsRead(t *testing.T, e *env) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 300_000) // 4.8 MB: several FUSE reads
	files := map[string]string{
		"a.txt": "alpha\n", "tool.sh*": "#!/bin/sh\necho hi\n", "empty": "",
		"src/b.c": "int b;\n", "src/deep/c.h": "#define C 1\n", "big.bin": string(big),
		"link": "->src/b.c", "emptydir/": "",
	}
	for i := range 50 {
		files[fmt.Sprintf("many/f%02d", i)] = fmt.Sprintf("file %d\n", i)
	}
	root := e.upload(t, files)
	tr, mnt := e.mount(t, root)

	// stat and listings need no file content.
	fi, err := os.Stat(filepath.Join(mnt, "tool.sh"))
	if err != nil || fi.Mode().Perm() != 0o555 || fi.Size() != int64(len(files["tool.sh*"])) {
		t.Fatalf("stat tool.sh: %v, %v", fi, err)
	}
	if fi, err := os.Stat(filepath.Join(mnt, "a.txt")); err != nil || fi.Mode().Perm() != 0o444 || fi.Size() != 6 {
		t.Fatalf("stat a.txt: %v, %v", fi, err)
	}
	names, err := os.ReadDir(filepath.Join(mnt, "many"))
	if err != nil || len(names) != 50 || names[0].Name() != "f00" {
		t.Fatalf("readdir many: %d entries, %v", len(names), err)
	}
	if target, err := os.Readlink(filepath.Join(mnt, "link")); err != nil || target != "src/b.c" {
		t.Fatalf("readlink: %q, %v", target, err)
	}
	if n := e.fetched.files(); n != 0 {
		t.Fatalf("stat, readdir and readlink fetched %d files", n)
	}

	// Reads at offsets, through a symlink, and of a large file.
	if b, err := readFile(filepath.Join(mnt, "link")); err != nil || string(b) != "int b;\n" {
		t.Fatalf("read through symlink: %q, %v", b, err)
	}
	f, err := openFile(filepath.Join(mnt, "big.bin"), os.O_RDONLY)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, off := range []int64{0, 1, 4095, 1 << 20, int64(len(big)) - 3} {
		buf := make([]byte, 100)
		n, err := f.ReadAt(buf, off)
		want := big[off:min(off+100, int64(len(big)))]
		if (err != nil && err != io.EOF) || !bytes.Equal(buf[:n], want) {
			t.Fatalf("ReadAt(%d): %q, %v; want %q", off, buf[:n], err, want)
		}
	}
	if b, err := io.ReadAll(f); err != nil || !bytes.Equal(b, big) {
		t.Fatalf("read big.bin whole: %d bytes, %v", len(b), err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, len(big), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatalf("mmap: %v", err)
	}
	if !bytes.Equal(m, big) {
		t.Error("mmap of big.bin differs")
	}
	unix.Munmap(m)
	if b, err := readFile(filepath.Join(mnt, "empty")); err != nil || len(b) != 0 {
		t.Fatalf("read empty: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "src/nope.h")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("stat of a missing file: %v", err)
	}

	// Two contents fetched (the empty file needs none), out of 56 files.
	if n := e.fetched.files(); n != 2 {
		t.Errorf("reading b.c, big.bin and an empty file fetched %d files from the CAS, want 2", n)
	}
	a := tr.Access()
	if want := []string{"big.bin", "empty", "link", "src/b.c"}; !slices.Equal(a.Read, want) {
		t.Errorf("Access().Read = %q, want %q", a.Read, want)
	}
	if want := []string{"src/nope.h"}; !slices.Equal(a.Missing, want) {
		t.Errorf("Access().Missing = %q, want %q", a.Missing, want)
	}
	if !slices.Contains(a.Listed, "many") {
		t.Errorf("Access().Listed = %q, want it to hold many", a.Listed)
	}
	if len(a.Written)+len(a.Created)+len(a.Deleted)+len(a.Renamed)+len(a.Chmodded) != 0 {
		t.Errorf("a reading action recorded changes: %+v", a)
	}
}

func TestInodeNumbers(t *testing.T) { modes(t, testInodeNumbers) }

func testInodeNumbers(t *testing.T, e *env) {
	files := map[string]string{"x/same": "content\n", "y/same": "content\n", "z": "other\n"}
	root := e.upload(t, files)
	ino := func(mnt, name string) uint64 {
		fi, err := os.Lstat(filepath.Join(mnt, name))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}
	_, m1 := e.mount(t, root)
	_, m2 := e.mount(t, root)
	for _, name := range []string{"x", "x/same", "y/same", "z"} {
		if a, b := ino(m1, name), ino(m2, name); a != b {
			t.Errorf("%s has inode %d in one mount and %d in another", name, a, b)
		}
	}
	if ino(m1, "x/same") == ino(m1, "y/same") {
		t.Error("two paths with the same content share an inode: a write to one would show in the other")
	}
	// The same file at the same path keeps its number in another tree.
	files["w"] = "new\n"
	_, m3 := e.mount(t, e.upload(t, files))
	if ino(m1, "z") != ino(m3, "z") {
		t.Error("an unchanged input changed inode number when another file was added to the tree")
	}
}

func TestWritesGoToTheLayer(t *testing.T) { modes(t, testWritesGoToTheLayer) }

func testWritesGoToTheLayer(t *testing.T, e *env) {
	files := map[string]string{"in.txt": "input\n", "keep.txt": "kept\n", "gone.txt": "bye\n", "sub/old": "old\n", "victim": "v\n"}
	root := e.upload(t, files)
	tr, mnt := e.mount(t, root)
	p := func(name string) string { return filepath.Join(mnt, name) }

	// A new file, written and read back.
	if err := writeFile(p("out.txt"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Appending to an input copies it up first.
	f, err := openFile(p("in.txt"), os.O_WRONLY|os.O_APPEND)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("more\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if b, _ := readFile(p("in.txt")); string(b) != "input\nmore\n" {
		t.Fatalf("in.txt after append: %q", b)
	}
	if err := os.Rename(p("out.txt"), p("victim")); err != nil { // over an input
		t.Fatal(err)
	}
	if err := os.Remove(p("gone.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(p("newdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../victim", p("newdir/l")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p("keep.txt"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p("sub/old"), 2); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(p("sub"), p("moved")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p("gone.txt")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stat of a removed input: %v", err)
	}
	if err := os.Remove(p("moved")); !errors.Is(err, syscall.ENOTEMPTY) && !errors.Is(err, syscall.EISDIR) {
		t.Errorf("remove a full directory: %v", err)
	}

	// What the kernel sees.
	want := map[string]string{"in.txt": "input\nmore\n", "keep.txt": "kept\n", "victim": "hello", "moved/old": "ol", "newdir/l": "hello"}
	for name, content := range want {
		if b, err := readFile(p(name)); err != nil || string(b) != content {
			t.Errorf("read %s: %q, %v; want %q", name, b, err, content)
		}
	}
	// What the worker sees through the View, after the action.
	for name, content := range want {
		if name == "newdir/l" {
			continue
		}
		f, err := tr.Open(name)
		if err != nil {
			t.Errorf("View Open %s: %v", name, err)
			continue
		}
		b, _ := io.ReadAll(f)
		f.Close()
		if string(b) != content {
			t.Errorf("View %s: %q, want %q", name, b, content)
		}
	}
	if fi, err := tr.Lstat("keep.txt"); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("View Lstat keep.txt: %v, %v", fi, err)
	}
	if target, err := tr.Readlink("newdir/l"); err != nil || target != "../victim" {
		t.Errorf("View Readlink: %q, %v", target, err)
	}
	entries, err := tr.ReadDir(".")
	var names []string
	for _, de := range entries {
		names = append(names, de.Name())
	}
	if wantNames := []string{"in.txt", "keep.txt", "moved", "newdir", "victim"}; err != nil || !slices.Equal(names, wantNames) {
		t.Errorf("View ReadDir: %q, %v; want %q", names, err, wantNames)
	}
	if d, ok := tr.KnownDigest("keep.txt"); !ok || d != digest.OfBytes([]byte("kept\n")) {
		t.Errorf("KnownDigest of an unchanged input: %v %v", d, ok)
	}
	if _, ok := tr.KnownDigest("in.txt"); ok {
		t.Error("KnownDigest of a changed input")
	}
	// The input's content in the cache is untouched.
	cp, err := e.cache.Path(context.Background(), digest.OfBytes([]byte("input\n")), false)
	if b, _ := readFile(cp); err != nil || string(b) != "input\n" {
		t.Errorf("the cache's copy of in.txt became %q (%v)", b, err)
	}

	a := tr.Access()
	check := func(field string, got, want []string) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Errorf("Access().%s = %q, want %q", field, got, want)
		}
	}
	check("Written", a.Written, []string{"in.txt", "out.txt", "sub/old"})
	check("Created", a.Created, []string{"newdir", "newdir/l", "out.txt"})
	check("Deleted", a.Deleted, []string{"gone.txt", "victim"}) // victim: renamed over
	check("Chmodded", a.Chmodded, []string{"keep.txt"})
	if want := []Rename{{"out.txt", "victim"}, {"sub", "moved"}}; !slices.Equal(a.Renamed, want) {
		t.Errorf("Access().Renamed = %v, want %v", a.Renamed, want)
	}
}

func TestMissingBlobIsEIO(t *testing.T) { modes(t, testMissingBlobIsEIO) }

func testMissingBlobIsEIO(t *testing.T, e *env) {
	root := e.upload(t, map[string]string{"here": "present\n", "lost": "this blob goes\n", "d/x": "x\n"})
	e.store.Delete(digest.OfBytes([]byte("this blob goes\n")))
	tr, mnt := e.mount(t, root)
	if b, err := readFile(filepath.Join(mnt, "here")); err != nil || string(b) != "present\n" {
		t.Fatalf("read here: %q, %v", b, err)
	}
	if err := tr.Err(); err != nil {
		t.Fatalf("Err before anything failed: %v", err)
	}
	_, err := readFile(filepath.Join(mnt, "lost"))
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("read of a file whose blob the CAS lacks: %v, want EIO", err)
	}
	var missing *cas.MissingError
	if err := tr.Err(); !errors.As(err, &missing) || missing.Digest != digest.OfBytes([]byte("this blob goes\n")) || !strings.Contains(err.Error(), `"lost"`) {
		t.Errorf("Err = %v, want a cas.MissingError naming the path", err)
	}
}

func TestConcurrentReaders(t *testing.T) { modes(t, testConcurrentReaders) }

func testConcurrentReaders(t *testing.T, e *env) {
	files := map[string]string{}
	for i := range 200 {
		files[fmt.Sprintf("d%d/f%d", i%10, i)] = strings.Repeat(fmt.Sprint(i), 1000)
	}
	root := e.upload(t, files)
	_, mnt := e.mount(t, root)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 200 {
				k := (j + w*25) % 200
				name := fmt.Sprintf("d%d/f%d", k%10, k)
				b, err := readFile(filepath.Join(mnt, name))
				if err != nil || string(b) != files[name] {
					errs <- fmt.Errorf("read %s: %d bytes, %v", name, len(b), err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := e.fetched.files(); n != 200 {
		t.Errorf("200 files read by 8 readers were fetched %d times", n)
	}
}

func TestPrefetch(t *testing.T) { testPrefetch(t, newEnv(t, false)) }

func testPrefetch(t *testing.T, e *env) {
	root := e.upload(t, map[string]string{"a": "1", "b/c": "2", "d": "3"})
	tr, err := e.fs.NewTree(context.Background(), TreeOptions{Root: root, Upper: t.TempDir(), Prefetch: []string{"a", "b/c", "nope"}})
	if err != nil {
		t.Fatal(err)
	}
	<-tr.prefetched
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if a := tr.Access(); a.Prefetched != 2 {
		t.Errorf("Prefetched = %d, want 2", a.Prefetched)
	}
	if n := e.fetched.files(); n != 2 {
		t.Errorf("prefetching a and b/c fetched %d files", n)
	}
}

// TestWriteWhileReadThroughPassthrough: a file the kernel reads straight
// from the cache (passthrough) cannot change under an open descriptor, so
// opening it for writing then fails as writing a running program does;
// once it is closed, the write copies it up.
func TestWriteWhileReadThroughPassthrough(t *testing.T) {
	modes(t, func(t *testing.T, e *env) {
		// Large enough to be read with passthrough (passthroughMin).
		old := strings.Repeat("old\n", passthroughMin/4)
		tr, mnt := e.mount(t, e.upload(t, map[string]string{"f": old}))
		p := filepath.Join(mnt, "f")
		r, err := openFile(p, os.O_RDONLY)
		if err != nil {
			t.Fatal(err)
		}
		w, err := openFile(p, os.O_WRONLY|os.O_TRUNC)
		if err == nil {
			w.Close()
		}
		switch {
		case tr.Passthrough() && !errors.Is(err, syscall.ETXTBSY):
			t.Errorf("open for writing while read through passthrough: %v, want ETXTBSY", err)
		case !tr.Passthrough() && err != nil:
			t.Errorf("open for writing while open for reading: %v", err)
		}
		r.Close()
		if err := writeFile(p, []byte("new\n"), 0); err != nil {
			t.Fatalf("write after the reader closed: %v", err)
		}
		if b, err := readFile(p); err != nil || string(b) != "new\n" {
			t.Fatalf("read back: %q, %v", b, err)
		}
	})
}

// batching is a counting BlobGetter that can also read in batches, like
// the remote CAS client.
type batching struct {
	counting
	batches [][]digest.Digest
}

func (b *batching) GetBatch(ctx context.Context, ds []digest.Digest) ([][]byte, []error) {
	b.mu.Lock()
	b.batches = append(b.batches, ds)
	b.mu.Unlock()
	data, errs := make([][]byte, len(ds)), make([]error, len(ds))
	for i, d := range ds {
		data[i], errs[i] = cas.ReadAll(ctx, b.BlobGetter, d)
	}
	return data, errs
}

// TestDirectoriesAreReadAhead: loading a directory reads all its
// subdirectories' messages in one batch, so looking into each of them
// needs no request of its own.
func TestDirectoriesAreReadAhead(t *testing.T) {
	e := newEnv(t, false)
	files := map[string]string{}
	for d := range 10 {
		files[fmt.Sprintf("d%d/f", d)] = fmt.Sprint(d)
	}
	root := e.upload(t, files)
	dirs := &batching{counting: counting{BlobGetter: e.store}}
	dirs.markFiles()
	tr, err := e.fs.NewTree(context.Background(), TreeOptions{Root: root, Upper: t.TempDir(), Directories: dirs})
	if err != nil {
		t.Fatal(err)
	}
	tr.bg.Wait() // the read-ahead of the root's subdirectories
	for d := range 10 {
		if _, err := tr.Lstat(fmt.Sprintf("d%d/f", d)); err != nil {
			t.Fatal(err)
		}
	}
	if n := dirs.reads(); n != 1 {
		t.Errorf("%d Directory messages were read one by one, want 1 (the root)", n)
	}
	if len(dirs.batches) != 1 || len(dirs.batches[0]) != 10 {
		t.Errorf("batches read: %v, want one of the 10 subdirectories", dirs.batches)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
}

// ctxGetter fails reads whose context has ended, as a remote CAS does.
type ctxGetter struct{ cas.BlobGetter }

func (g ctxGetter) Get(ctx context.Context, d digest.Digest, off int64) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return g.BlobGetter.Get(ctx, d, off)
}

// TestViewAfterClose: the worker collects outputs after the sandbox ended
// and the tree was closed, also from directories the action never looked
// into.
func TestViewAfterClose(t *testing.T) {
	e := newEnv(t, false)
	root := e.upload(t, map[string]string{"a/b/c.txt": "c\n"})
	tr, err := e.fs.NewTree(context.Background(), TreeOptions{Root: root, Upper: t.TempDir(), Directories: ctxGetter{e.store}})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := tr.Lstat("a/b/c.txt"); err != nil || fi.Size() != 2 {
		t.Fatalf("Lstat after Close: %v, %v", fi, err)
	}
	f, err := tr.Open("a/b/c.txt")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(f)
	f.Close()
	if string(b) != "c\n" {
		t.Errorf("read %q", b)
	}
}

// TestSmallInputsServedBeforeTheCacheHasThem: a small input the cache
// lacks is served from the bytes fetched, and written into the cache only
// once the action's tree is closed, without being fetched again.
func TestSmallInputsServedBeforeTheCacheHasThem(t *testing.T) {
	e := newEnv(t, true)
	content := "a small header\n"
	d := digest.OfBytes([]byte(content))
	// Registered before the mount, so it runs after the unmount and
	// Close of the tree (cleanups run last first).
	t.Cleanup(func() {
		e.fs.Close() // waits for the hand-overs
		if !e.cache.Has(d, false) {
			t.Error("the fetched input never reached the cache")
		}
		if n := e.fetched.files(); n != 1 {
			t.Errorf("the input was fetched %d times, want once", n)
		}
	})
	_, mnt := e.mount(t, e.upload(t, map[string]string{"h.h": content}))
	for range 3 {
		if b, err := readFile(filepath.Join(mnt, "h.h")); err != nil || string(b) != content {
			t.Fatalf("read: %q, %v", b, err)
		}
	}
	if e.cache.Has(d, false) {
		t.Error("the cache has the input while the action still runs: its file was written on the action's time")
	}
}

// TestOverwriteAndRemove: overwriting an input with O_TRUNC needs none of
// its content (not even when the CAS lost it); a removed file's layer file
// goes; and a written file's mtime moves with its writes.
func TestOverwriteAndRemove(t *testing.T) {
	modes(t, func(t *testing.T, e *env) {
		lost := "content the CAS lost\n"
		root := e.upload(t, map[string]string{"lost.txt": lost})
		e.store.Delete(digest.OfBytes([]byte(lost)))
		tr, mnt := e.mount(t, root)
		p := func(name string) string { return filepath.Join(mnt, name) }
		if err := writeFile(p("lost.txt"), []byte("new\n"), 0); err != nil {
			t.Fatalf("overwrite an input whose blob is gone: %v", err)
		}
		if b, err := readFile(p("lost.txt")); err != nil || string(b) != "new\n" {
			t.Fatalf("read back: %q, %v", b, err)
		}
		if err := tr.Err(); err != nil || e.fetched.files() != 0 {
			t.Errorf("the overwrite fetched the old content (%d fetches, Err %v)", e.fetched.files(), err)
		}

		if err := writeFile(p("tmp"), bytes.Repeat([]byte("t"), 1<<20), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(p("tmp")); err != nil {
			t.Fatal(err)
		}
		var layer int64
		filepath.WalkDir(tr.opts.Upper, func(_ string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if fi, err := d.Info(); err == nil {
					layer += fi.Size()
				}
			}
			return nil
		})
		if layer != 4 { // lost.txt's "new\n" only
			t.Errorf("the layer holds %d bytes after a 1 MiB file was removed, want 4", layer)
		}

		old := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
		if err := os.Chtimes(p("lost.txt"), old, old); err != nil {
			t.Fatal(err)
		}
		f, err := openFile(p("lost.txt"), os.O_WRONLY|os.O_APPEND)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString("more\n")
		f.Close()
		if fi, err := os.Stat(p("lost.txt")); err != nil || !fi.ModTime().After(old) || fi.Size() != 9 {
			t.Errorf("after utimes and an append: %v, %v; want a newer mtime and 9 bytes", fi, err)
		}
	})
}
