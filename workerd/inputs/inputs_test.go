package inputs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/cas/memstore"
	"github.com/mound-build/mound/cas/storetest"
	"github.com/mound-build/mound/cas/tree"
	"github.com/mound-build/mound/workerd/blobcache"
)

func fileNode(name string, d digest.Digest, exec bool) *repb.FileNode {
	return &repb.FileNode{Name: name, Digest: d.Proto(), IsExecutable: exec}
}

func dirNode(name string, d digest.Digest) *repb.DirectoryNode {
	return &repb.DirectoryNode{Name: name, Digest: d.Proto()}
}

// newSource returns a Source over mem with a blob cache in base, and the
// store counting the cache's fetches.
func newSource(t testing.TB, mem *memstore.Store, base string) (Source, *storetest.CountingStore) {
	t.Helper()
	remote := storetest.NewCountingStore(mem)
	c, err := blobcache.Open(blobcache.Options{Dir: filepath.Join(base, "cache"), MaxBytes: 1 << 30, Remote: remote, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return Source{Directories: mem, Files: c}, remote
}

// listing describes everything under dir, one sorted line per entry.
func listing(t *testing.T, dir string) []string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			lines = append(lines, fmt.Sprintf("link %s -> %s", rel, target))
		case info.IsDir():
			lines = append(lines, fmt.Sprintf("dir  %s %v", rel, info.Mode().Perm()))
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			lines = append(lines, fmt.Sprintf("file %s %v %q", rel, info.Mode().Perm(), b))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(lines)
	return lines
}

func TestMaterialize(t *testing.T) {
	ctx := storetest.Context(t)
	mem := memstore.New()
	hello := storetest.Put(t, mem, []byte("hello\n"))
	script := storetest.Put(t, mem, []byte("#!/bin/sh\necho hi\n"))
	empty := storetest.PutMessage(t, mem, &repb.Directory{})
	sub := storetest.PutMessage(t, mem, &repb.Directory{
		Files:       []*repb.FileNode{fileNode("b.txt", hello, false), fileNode("run", hello, true)},
		Directories: []*repb.DirectoryNode{dirNode("empty", empty)},
	})
	root := storetest.PutMessage(t, mem, &repb.Directory{
		Files: []*repb.FileNode{
			fileNode("a.txt", hello, false),
			fileNode("dup.txt", hello, false),
			fileNode("nothing", digest.Empty, false),
			fileNode("run.sh", script, true),
		},
		Directories: []*repb.DirectoryNode{dirNode("sub", sub), dirNode("sub2", sub)},
		Symlinks: []*repb.SymlinkNode{
			{Name: "abs", Target: "/etc/passwd"},
			{Name: "link", Target: "sub/b.txt"},
			{Name: "up", Target: "../outside"},
		},
	})
	base := t.TempDir()
	src, remote := newSource(t, mem, base)
	dir := filepath.Join(base, "root")
	stats, err := Materialize(ctx, src, root, dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`dir  sub -rwxr-xr-x`,
		`dir  sub/empty -rwxr-xr-x`,
		`dir  sub2 -rwxr-xr-x`,
		`dir  sub2/empty -rwxr-xr-x`,
		`file a.txt -r--r--r-- "hello\n"`,
		`file dup.txt -r--r--r-- "hello\n"`,
		`file nothing -r--r--r-- ""`,
		`file run.sh -r-xr-xr-x "#!/bin/sh\necho hi\n"`,
		`file sub/b.txt -r--r--r-- "hello\n"`,
		`file sub/run -r-xr-xr-x "hello\n"`,
		`file sub2/b.txt -r--r--r-- "hello\n"`,
		`file sub2/run -r-xr-xr-x "hello\n"`,
		`link abs -> /etc/passwd`,
		`link link -> sub/b.txt`,
		`link up -> ../outside`,
	}
	slices.Sort(want)
	if got := listing(t, dir); !slices.Equal(got, want) {
		t.Fatalf("tree:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	wantStats := Stats{Files: 8, Dirs: 5, Symlinks: 3, Bytes: 6*hello.Size + script.Size, Contents: 4}
	stats.ReadTime, stats.FetchTime = 0, 0
	if stats != wantStats {
		t.Fatalf("Stats = %+v, want %+v", stats, wantStats)
	}
	// One fetch per distinct content, none for the empty blob; every copy
	// of a content in one mode is one inode, the cache's.
	if gets := remote.Counts().Gets; gets[hello] != 1 || gets[script] != 1 || len(gets) != 2 {
		t.Fatalf("remote Gets = %v, want one of each content", gets)
	}
	ino := func(rel string) uint64 {
		info, err := os.Stat(filepath.Join(dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		return info.Sys().(*syscall.Stat_t).Ino
	}
	if ino("a.txt") != ino("sub2/b.txt") || ino("a.txt") != ino("dup.txt") || ino("a.txt") == ino("sub/run") {
		t.Fatal("files of one content and mode are not hardlinks of one cache file")
	}
}

func TestMaterializeIntoExistingDir(t *testing.T) {
	ctx := storetest.Context(t)
	mem := memstore.New()
	root := storetest.PutMessage(t, mem, &repb.Directory{Files: []*repb.FileNode{fileNode("f", storetest.Put(t, mem, []byte("x")), false)}})
	base := t.TempDir()
	src, _ := newSource(t, mem, base)
	dir := filepath.Join(base, "root")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := Materialize(ctx, src, root, dir); err != nil {
		t.Fatalf("into an empty directory: %v", err)
	}
	_, err := Materialize(ctx, src, root, dir)
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("into a non-empty directory: %v", err)
	}
	if got := listing(t, dir); len(got) != 1 {
		t.Fatalf("failed Materialize changed the directory: %v", got)
	}
}

// TestHostileTrees materializes malformed and malicious trees and checks
// that each fails with a clear error and leaves nothing behind.
func TestHostileTrees(t *testing.T) {
	mem := memstore.New()
	content := storetest.Put(t, mem, []byte("pwned\n"))
	file := func(name string) *repb.FileNode { return fileNode(name, content, false) }
	inner := storetest.PutMessage(t, mem, &repb.Directory{Files: []*repb.FileNode{file("passwd")}})
	absentFile := digest.OfBytes([]byte("never uploaded"))
	absentDir := digest.OfBytes([]byte("no such directory"))
	garbage := storetest.Put(t, mem, []byte{0xff, 0xff, 0xff})
	deep := storetest.PutMessage(t, mem, &repb.Directory{})
	for range tree.MaxDepth + 1 {
		deep = storetest.PutMessage(t, mem, &repb.Directory{Directories: []*repb.DirectoryNode{dirNode("d", deep)}})
	}
	// Each level doubles the paths: 2^30 directories from 31 blobs.
	bomb := storetest.PutMessage(t, mem, &repb.Directory{Files: []*repb.FileNode{file("f")}})
	for range 30 {
		bomb = storetest.PutMessage(t, mem, &repb.Directory{Directories: []*repb.DirectoryNode{dirNode("a", bomb), dirNode("b", bomb)}})
	}
	tests := []struct {
		name     string
		root     *repb.Directory
		rootBlob digest.Digest
		wantIs   error
		wantText string
	}{
		{name: "dotdot file", root: &repb.Directory{Files: []*repb.FileNode{file("..")}}, wantIs: ErrInvalid, wantText: `file name ".."`},
		{name: "dotdot directory", root: &repb.Directory{Directories: []*repb.DirectoryNode{dirNode("..", inner)}}, wantIs: ErrInvalid, wantText: `directory name ".."`},
		{name: "dot directory", root: &repb.Directory{Directories: []*repb.DirectoryNode{dirNode(".", inner)}}, wantIs: ErrInvalid, wantText: `"."`},
		{name: "slash", root: &repb.Directory{Files: []*repb.FileNode{file("../../etc/passwd")}}, wantIs: ErrInvalid, wantText: "slash"},
		{name: "slash in symlink name", root: &repb.Directory{Symlinks: []*repb.SymlinkNode{{Name: "a/b", Target: "x"}}}, wantIs: ErrInvalid, wantText: "slash"},
		{name: "empty name", root: &repb.Directory{Files: []*repb.FileNode{file("")}}, wantIs: ErrInvalid, wantText: "empty"},
		{name: "NUL", root: &repb.Directory{Files: []*repb.FileNode{file("a\x00b")}}, wantIs: ErrInvalid, wantText: "NUL"},
		{name: "duplicate file", root: &repb.Directory{Files: []*repb.FileNode{file("x"), file("x")}}, wantIs: ErrInvalid, wantText: `"x" is both a file and a file`},
		{name: "directory listed twice", root: &repb.Directory{Directories: []*repb.DirectoryNode{dirNode("d", inner), dirNode("d", inner)}}, wantIs: ErrInvalid, wantText: "both a directory and a directory"},
		{name: "file and symlink", root: &repb.Directory{Files: []*repb.FileNode{file("x")}, Symlinks: []*repb.SymlinkNode{{Name: "x", Target: "/etc"}}}, wantIs: ErrInvalid, wantText: "both a file and a symlink"},
		{name: "empty symlink target", root: &repb.Directory{Symlinks: []*repb.SymlinkNode{{Name: "l", Target: ""}}}, wantIs: ErrInvalid, wantText: "target"},
		{name: "bad digest", root: &repb.Directory{Files: []*repb.FileNode{{Name: "f", Digest: &repb.Digest{Hash: "zz", SizeBytes: 1}}}}, wantIs: digest.ErrInvalid},
		{name: "missing file", root: &repb.Directory{Directories: []*repb.DirectoryNode{dirNode("ok", inner)}, Files: []*repb.FileNode{fileNode("gone.o", absentFile, false)}}, wantIs: cas.ErrNotFound, wantText: `input file "gone.o"`},
		{name: "missing directory", root: &repb.Directory{Directories: []*repb.DirectoryNode{dirNode("lost", absentDir)}}, wantIs: cas.ErrNotFound, wantText: `directory "lost"`},
		{name: "not a Directory", root: &repb.Directory{Directories: []*repb.DirectoryNode{dirNode("junk", garbage)}}, wantIs: ErrInvalid, wantText: `directory "junk"`},
		{name: "too deep", rootBlob: deep, wantIs: ErrInvalid, wantText: "deeper"},
		{name: "expands too much", rootBlob: bomb, wantIs: ErrInvalid, wantText: "more than"},
		{name: "missing root", rootBlob: absentDir, wantIs: cas.ErrNotFound, wantText: "root directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := storetest.Context(t)
			root := tc.rootBlob
			if tc.root != nil {
				root = storetest.PutMessage(t, mem, tc.root)
			}
			base := t.TempDir()
			src, _ := newSource(t, mem, filepath.Join(base, "worker"))
			parent := filepath.Join(base, "action")
			if err := os.Mkdir(parent, 0o755); err != nil {
				t.Fatal(err)
			}
			_, err := Materialize(ctx, src, root, filepath.Join(parent, "root"))
			if err == nil || !errors.Is(err, tc.wantIs) || !strings.Contains(err.Error(), tc.wantText) {
				t.Fatalf("error = %v, want one wrapping %v and saying %q", err, tc.wantIs, tc.wantText)
			}
			if tc.wantIs == cas.ErrNotFound {
				var missing *cas.MissingError
				if !errors.As(err, &missing) {
					t.Fatalf("error %v does not hold the cas.MissingError", err)
				}
			}
			if left, _ := os.ReadDir(parent); len(left) != 0 {
				t.Fatalf("left behind: %v", left)
			}
			if left, _ := os.ReadDir(base); len(left) != 2 {
				t.Fatalf("wrote beside the target: %v", left)
			}
		})
	}
}

// TestCopyAcrossFileSystems places files from a cache where link(2)
// cannot reach: on tmpfs when /dev/shm is another file system than the
// test's directory, and by taking the copying path directly otherwise.
func TestCopyAcrossFileSystems(t *testing.T) {
	ctx := storetest.Context(t)
	mem := memstore.New()
	data := []byte("copied, not linked")
	d := storetest.Put(t, mem, data)
	root := storetest.PutMessage(t, mem, &repb.Directory{Files: []*repb.FileNode{fileNode("plain", d, false), fileNode("exec", d, true)}})
	base := t.TempDir()
	cacheBase := base
	if shm, err := os.MkdirTemp("/dev/shm", "inputs-test-"); err == nil {
		t.Cleanup(func() { os.RemoveAll(shm) })
		cacheBase = shm
	}
	src, _ := newSource(t, mem, cacheBase)
	dir := filepath.Join(base, "root")
	if _, err := Materialize(ctx, src, root, dir); err != nil {
		t.Fatal(err)
	}
	want := []string{
		fmt.Sprintf("file exec -r-xr-xr-x %q", data),
		fmt.Sprintf("file plain -r--r--r-- %q", data),
	}
	if got := listing(t, dir); !slices.Equal(got, want) {
		t.Fatalf("tree %v, want %v", got, want)
	}

	// The copying path itself, whatever the file systems.
	cached, err := src.Files.Path(ctx, d, true)
	if err != nil {
		t.Fatal(err)
	}
	var copying atomic.Bool
	copying.Store(true)
	dst := filepath.Join(base, "forced-copy")
	if err := placeOne(cached, dst, true, &copying); err != nil {
		t.Fatal(err)
	}
	a, _ := os.Stat(cached)
	b, err := os.Stat(dst)
	if err != nil || os.SameFile(a, b) || b.Mode().Perm() != 0o555 {
		t.Fatalf("forced copy: %v, %v", b, err)
	}
}

// evictingCache hands out a path and removes it before the caller can
// link it, the first time for each blob: the race with eviction.
type evictingCache struct {
	FileCache
	mu   sync.Mutex
	seen map[digest.Digest]bool // guarded by mu
}

func (c *evictingCache) Path(ctx context.Context, d digest.Digest, exec bool) (string, error) {
	p, err := c.FileCache.Path(ctx, d, exec)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil && !c.seen[d] {
		c.seen[d] = true
		return p + ".evicted", nil
	}
	return p, err
}

func TestEvictedBeforeLinkIsFetchedAgain(t *testing.T) {
	ctx := storetest.Context(t)
	mem := memstore.New()
	d := storetest.Put(t, mem, []byte("racy"))
	root := storetest.PutMessage(t, mem, &repb.Directory{Files: []*repb.FileNode{fileNode("f", d, false)}})
	base := t.TempDir()
	src, _ := newSource(t, mem, base)
	src.Files = &evictingCache{FileCache: src.Files, seen: map[digest.Digest]bool{}}
	dir := filepath.Join(base, "root")
	if _, err := Materialize(ctx, src, root, dir); err != nil {
		t.Fatal(err)
	}
	if got := listing(t, dir); len(got) != 1 {
		t.Fatalf("tree %v", got)
	}
}
