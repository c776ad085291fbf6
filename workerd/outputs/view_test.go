package outputs

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/cas/storetest"
)

// memView is a View held in memory, made of entries written as build's.
// It follows no symlinks: a name whose way passes through one does not
// exist. Open serves a file's content from an unlinked temporary file
// (Open must return an *os.File) and fails for the names in unreadable.
type memView struct {
	tmp        string
	entries    map[string]memEntry // by name; "." is the root
	unreadable map[string]bool

	mu     sync.Mutex
	opened []string // names passed to Open, in order; guarded by mu
}

type memEntry struct {
	mode   fs.FileMode
	data   string // a file's content
	target string // a symlink's target
}

func newMemView(t *testing.T, entries map[string]string) *memView {
	t.Helper()
	v := &memView{tmp: t.TempDir(), entries: map[string]memEntry{".": {mode: fs.ModeDir | 0o755}}}
	for key, content := range entries {
		name := strings.TrimRight(key, "/@")
		for d := path.Dir(name); d != "."; d = path.Dir(d) {
			v.entries[d] = memEntry{mode: fs.ModeDir | 0o755}
		}
		switch {
		case strings.HasSuffix(key, "/"):
			v.entries[name] = memEntry{mode: fs.ModeDir | 0o755}
		case strings.HasSuffix(key, "@"):
			v.entries[name] = memEntry{mode: fs.ModeSymlink | 0o777, target: content}
		case strings.HasPrefix(content, "#!"):
			v.entries[name] = memEntry{mode: 0o755, data: content}
		default:
			v.entries[name] = memEntry{mode: 0o644, data: content}
		}
	}
	return v
}

// memInfo describes a memEntry.
type memInfo struct {
	name string
	e    memEntry
}

func (i memInfo) Name() string       { return path.Base(i.name) }
func (i memInfo) Size() int64        { return int64(len(i.e.data) + len(i.e.target)) }
func (i memInfo) Mode() fs.FileMode  { return i.e.mode }
func (i memInfo) ModTime() time.Time { return time.Time{} }
func (i memInfo) IsDir() bool        { return i.e.mode.IsDir() }
func (i memInfo) Sys() any           { return nil }

func (v *memView) entry(op, name string) (memEntry, error) {
	e, ok := v.entries[name]
	if !ok {
		return memEntry{}, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
	}
	return e, nil
}

func (v *memView) Lstat(name string) (fs.FileInfo, error) {
	e, err := v.entry("lstat", name)
	if err != nil {
		return nil, err
	}
	return memInfo{name, e}, nil
}

func (v *memView) ReadDir(name string) ([]fs.DirEntry, error) {
	e, err := v.entry("readdir", name)
	if err != nil {
		return nil, err
	}
	if !e.mode.IsDir() {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: syscall.ENOTDIR}
	}
	var list []fs.DirEntry
	for child, ce := range v.entries {
		if child != "." && path.Dir(child) == name {
			list = append(list, fs.FileInfoToDirEntry(memInfo{child, ce}))
		}
	}
	slices.SortFunc(list, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return list, nil
}

func (v *memView) Readlink(name string) (string, error) {
	e, err := v.entry("readlink", name)
	if err != nil {
		return "", err
	}
	if e.mode&fs.ModeSymlink == 0 {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: syscall.EINVAL}
	}
	return e.target, nil
}

func (v *memView) Open(name string) (*os.File, error) {
	e, err := v.entry("open", name)
	if err != nil {
		return nil, err
	}
	if !e.mode.IsRegular() {
		return nil, &fs.PathError{Op: "open", Path: name, Err: syscall.EINVAL}
	}
	v.mu.Lock()
	v.opened = append(v.opened, name)
	v.mu.Unlock()
	if v.unreadable[name] {
		return nil, &fs.PathError{Op: "open", Path: name, Err: errors.New("the test forbids reading this file")}
	}
	f, err := os.CreateTemp(v.tmp, "content-")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name())
	if _, err := io.WriteString(f, e.data); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// openedNames returns the distinct names opened so far, sorted.
func (v *memView) openedNames() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	names := slices.Clone(v.opened)
	slices.Sort(names)
	return slices.Compact(names)
}

// knownView is a memView with the KnownDigests ability.
type knownView struct {
	*memView
	known map[string]digest.Digest
}

func (v knownView) KnownDigest(name string) (digest.Digest, bool) {
	d, ok := v.known[name]
	return d, ok
}

// TestCollectMemViewMatchesDirView collects the same outputs from a
// directory on disk and from the same tree in memory: Collect must depend
// on nothing but the View.
func TestCollectMemViewMatchesDirView(t *testing.T) {
	ctx := storetest.Context(t)
	entries := map[string]string{
		"wd/out/a.o":       "object a",
		"wd/out/tool":      "#!/bin/sh\n",
		"wd/big.bin":       strings.Repeat("B", smallBlobBytes+1),
		"wd/flink@":        "out/a.o",
		"wd/dlink@":        "gen",
		"wd/chain@":        "dlink",
		"wd/up@":           "../outside",
		"wd/esc@":          "../../etc",
		"wd/abs@":          "/usr",
		"wd/loop@":         "loop",
		"wd/gen/x.h":       "x",
		"wd/gen/sub/y.h":   "#!y",
		"wd/gen/sub/link@": "../x.h",
		"wd/gen/empty/":    "",
		"outside/":         "",
	}
	disk := t.TempDir()
	build(t, disk, entries)
	mem := newMemView(t, entries)
	for _, cmd := range []*repb.Command{
		{WorkingDirectory: "wd", OutputFiles: []string{"big.bin", "flink", "nope.o", "out/a.o", "out/tool"}, OutputDirectories: []string{"dlink", "gen", "nodir"}},
		{WorkingDirectory: "wd", OutputPaths: []string{"abs", "chain", "dlink", "esc", "flink", "gen", "loop", "out", "up"}},
		{OutputDirectories: []string{""}},
	} {
		diskStore, memStore := newCountingStore(), newCountingStore()
		want, err := collectDir(t, ctx, disk, cmd, diskStore)
		if err != nil {
			t.Fatalf("Collect(%v) from disk: %v", cmd, err)
		}
		got, err := Collect(ctx, mem, cmd, memStore)
		if err != nil {
			t.Fatalf("Collect(%v) from memory: %v", cmd, err)
		}
		if !proto.Equal(got, want) {
			t.Errorf("Collect(%v) from memory:\n%v\nfrom disk:\n%v", cmd, got, want)
		}
		sentMem, sentDisk := memStore.Counts().Sent(), diskStore.Counts().Sent()
		slices.SortFunc(sentMem, compareDigests)
		slices.SortFunc(sentDisk, compareDigests)
		if !slices.Equal(sentMem, sentDisk) {
			t.Errorf("Collect(%v) sent %v from memory, %v from disk", cmd, sentMem, sentDisk)
		}
	}
	// Of the output_paths symlinks, only those leading to a directory
	// inside the root are directory symlinks: not the absolute one, not
	// the one leaving the root, not the loop.
	res, err := Collect(ctx, mem, &repb.Command{WorkingDirectory: "wd", OutputPaths: []string{"abs", "chain", "dlink", "esc", "flink", "loop", "up"}}, newCountingStore())
	if err != nil {
		t.Fatal(err)
	}
	var dirLinks []string
	for _, l := range res.GetOutputDirectorySymlinks() {
		dirLinks = append(dirLinks, l.GetPath())
	}
	if want := []string{"chain", "dlink", "up"}; !slices.Equal(dirLinks, want) {
		t.Errorf("directory symlinks %q, want %q", dirLinks, want)
	}
}

func compareDigests(a, b digest.Digest) int { return strings.Compare(a.String(), b.String()) }

// TestCollectKnownDigests checks that Collect does not read a file whose
// digest the view knows, and that a known digest of the wrong size is not
// trusted.
func TestCollectKnownDigests(t *testing.T) {
	ctx := storetest.Context(t)
	mem := newMemView(t, map[string]string{
		"in/lib.a":   "unchanged library",
		"out/lib.h":  "unchanged header",
		"out/new.o":  "new object",
		"out/tool":   "#!rewritten tool",
		"out/sub/x@": "../lib.h",
	})
	view := knownView{memView: mem, known: map[string]digest.Digest{
		"in/lib.a":  digest.OfBytes([]byte("unchanged library")),
		"out/lib.h": digest.OfBytes([]byte("unchanged header")),
		// Inconsistent with the file: hashed instead.
		"out/tool": digest.OfBytes([]byte("#!the tool as it was")),
	}}
	mem.unreadable = map[string]bool{"in/lib.a": true, "out/lib.h": true}
	store := newCountingStore()
	// Inputs are in the CAS already.
	for _, s := range []string{"unchanged library", "unchanged header"} {
		storetest.Put(t, store.BlobStore, []byte(s))
	}
	res, err := Collect(ctx, view, &repb.Command{OutputFiles: []string{"in/lib.a"}, OutputDirectories: []string{"out"}}, store)
	if err != nil {
		t.Fatal(err)
	}
	if files := res.GetOutputFiles(); len(files) != 1 || !proto.Equal(files[0].GetDigest(), fileDigest("unchanged library")) {
		t.Errorf("output files %v, want in/lib.a with its known digest", files)
	}
	wantTree := []string{
		`lib.h="unchanged header" exec=false`,
		`new.o="new object" exec=false`,
		`sub/`, `sub/x@ -> ../lib.h`,
		`tool="#!rewritten tool" exec=true`,
	}
	if got := readTree(t, store, res.GetOutputDirectories()[0]); !slices.Equal(got, wantTree) {
		t.Errorf("tree:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantTree, "\n"))
	}
	if got, want := mem.openedNames(), []string{"out/new.o", "out/tool"}; !slices.Equal(got, want) {
		t.Errorf("opened %q, want only %q", got, want)
	}
	for _, s := range []string{"unchanged library", "unchanged header"} {
		if slices.Contains(store.Counts().Sent(), digest.OfBytes([]byte(s))) {
			t.Errorf("uploaded %q, which the store had", s)
		}
	}
}

// TestCollectViewErrors checks that a failure to read through the view is
// Collect's error, naming the file.
func TestCollectViewErrors(t *testing.T) {
	ctx := storetest.Context(t)
	mem := newMemView(t, map[string]string{"out/a.o": "a", "out/b.o": "b"})
	mem.unreadable = map[string]bool{"out/b.o": true}
	_, err := Collect(ctx, mem, &repb.Command{OutputDirectories: []string{"out"}}, newCountingStore())
	if err == nil || !strings.Contains(err.Error(), "out/b.o") {
		t.Errorf("Collect with an unreadable file: %v", err)
	}
	// A known file the store lacks must be read to upload it.
	mem = newMemView(t, map[string]string{"lib.a": "library"})
	mem.unreadable = map[string]bool{"lib.a": true}
	view := knownView{memView: mem, known: map[string]digest.Digest{"lib.a": digest.OfBytes([]byte("library"))}}
	_, err = Collect(ctx, view, &repb.Command{OutputFiles: []string{"lib.a"}}, newCountingStore())
	if err == nil || !strings.Contains(err.Error(), "lib.a") {
		t.Errorf("Collect of a known file the store lacks: %v", err)
	}
}
