package outputs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/cas/memstore"
	"github.com/mound-build/mound/cas/storetest"
	"github.com/mound-build/mound/workerd/inputs"
)

// newCountingStore returns an empty memstore that counts what is sent to it.
func newCountingStore() *storetest.CountingStore {
	return storetest.NewCountingStore(memstore.New())
}

// build creates entries under root: "path" -> content makes a file (mode
// 0755 when content starts with "#!"), "path/" a directory, "path@" a
// symlink to content.
func build(t *testing.T, root string, entries map[string]string) {
	t.Helper()
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range entries {
			if !yield(k) {
				return
			}
		}
	})
	for _, name := range names {
		content := entries[name]
		p := filepath.Join(root, strings.TrimRight(name, "/@"))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case strings.HasSuffix(name, "/"):
			err = os.MkdirAll(p, 0o755)
		case strings.HasSuffix(name, "@"):
			err = os.Symlink(content, p)
		case strings.HasPrefix(content, "#!"):
			err = os.WriteFile(p, []byte(content), 0o755)
		default:
			err = os.WriteFile(p, []byte(content), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// readTree fetches the Tree d from s, checks that it is topologically
// sorted with distinct children, and returns its listing: one line per
// entry, like build's keys.
func readTree(t *testing.T, s cas.BlobGetter, od *repb.OutputDirectory) []string {
	t.Helper()
	ctx := context.Background()
	td, err := digest.FromProto(od.GetTreeDigest())
	if err != nil {
		t.Fatal(err)
	}
	b, err := cas.ReadAll(ctx, s, td)
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != 0x0a {
		t.Fatalf("Tree does not start with its root record: %#x", b[0])
	}
	tree := &repb.Tree{}
	if err := proto.Unmarshal(b, tree); err != nil {
		t.Fatal(err)
	}
	_, rootDigest, _ := digest.OfMessage(tree.GetRoot())
	if got, _ := digest.FromProto(od.GetRootDirectoryDigest()); got != rootDigest || !od.GetIsTopologicallySorted() {
		t.Fatalf("root_directory_digest %v, want %v; sorted %v", got, rootDigest, od.GetIsTopologicallySorted())
	}
	if _, err := cas.ReadAll(ctx, s, rootDigest); err != nil {
		t.Fatalf("root Directory not stored: %v", err)
	}
	index := map[digest.Digest]int{}
	dirs := map[digest.Digest]*repb.Directory{}
	for i, c := range tree.GetChildren() {
		_, d, _ := digest.OfMessage(c)
		if _, dup := index[d]; dup {
			t.Fatalf("child %v appears twice", d)
		}
		index[d], dirs[d] = i, c
	}
	var lines []string
	var walk func(dir *repb.Directory, pos int, prefix string)
	walk = func(dir *repb.Directory, pos int, prefix string) {
		for _, f := range dir.GetFiles() {
			fd, _ := digest.FromProto(f.GetDigest())
			content, err := cas.ReadAll(ctx, s, fd)
			if err != nil {
				t.Fatalf("file %s: %v", path.Join(prefix, f.GetName()), err)
			}
			lines = append(lines, fmt.Sprintf("%s=%q exec=%v", path.Join(prefix, f.GetName()), content, f.GetIsExecutable()))
		}
		for _, sub := range dir.GetDirectories() {
			sd, _ := digest.FromProto(sub.GetDigest())
			i, ok := index[sd]
			if !ok || i <= pos {
				t.Fatalf("directory %s (%v) at %d, its parent at %d: not topological", sub.GetName(), sd, i, pos)
			}
			lines = append(lines, path.Join(prefix, sub.GetName())+"/")
			walk(dirs[sd], i, path.Join(prefix, sub.GetName()))
		}
		for _, l := range dir.GetSymlinks() {
			lines = append(lines, path.Join(prefix, l.GetName())+"@ -> "+l.GetTarget())
		}
	}
	walk(tree.GetRoot(), -1, "")
	slices.Sort(lines)
	return lines
}

// collectDir collects cmd's outputs from the directory root through a
// DirView.
func collectDir(t *testing.T, ctx context.Context, root string, cmd *repb.Command, store Store) (*repb.ActionResult, error) {
	t.Helper()
	view, err := OpenDirView(root)
	if err != nil {
		t.Fatal(err)
	}
	defer view.Close()
	return Collect(ctx, view, cmd, store)
}

func fileDigest(s string) *repb.Digest { return digest.OfBytes([]byte(s)).Proto() }

func TestCollectV20(t *testing.T) {
	ctx := storetest.Context(t)
	root := t.TempDir()
	big := strings.Repeat("B", smallBlobBytes+1)
	build(t, root, map[string]string{
		"wd/out/a.o":        "object a",
		"wd/out/tool":       "#!/bin/sh\n",
		"wd/big.bin":        big,
		"wd/flink@":         "out/a.o",
		"wd/dlink@":         "gen",
		"wd/gen/x.h":        "x",
		"wd/gen/sub/y.h":    "#!y",
		"wd/gen/sub/link@":  "../x.h",
		"wd/gen/copy/y.h":   "#!y",
		"wd/gen/copy/link@": "../x.h",
		"wd/gen/empty/":     "",
		"wd/gen/abs@":       "/etc/passwd",
	})
	store := newCountingStore()
	if err := store.BlobStore.Put(ctx, digest.OfBytes([]byte("object a")), strings.NewReader("object a")); err != nil {
		t.Fatal(err)
	}
	cmd := &repb.Command{
		WorkingDirectory:  "wd",
		OutputFiles:       []string{"big.bin", "flink", "nope.o", "out/a.o", "out/tool"},
		OutputDirectories: []string{"dlink", "gen", "nodir"},
	}
	res, err := collectDir(t, ctx, root, cmd, store)
	if err != nil {
		t.Fatal(err)
	}
	wantFiles := []*repb.OutputFile{
		{Path: "big.bin", Digest: fileDigest(big)},
		{Path: "out/a.o", Digest: fileDigest("object a")},
		{Path: "out/tool", Digest: fileDigest("#!/bin/sh\n"), IsExecutable: true},
	}
	flink := &repb.OutputSymlink{Path: "flink", Target: "out/a.o"}
	dlink := &repb.OutputSymlink{Path: "dlink", Target: "gen"}
	want := &repb.ActionResult{
		OutputFiles:             wantFiles,
		OutputFileSymlinks:      []*repb.OutputSymlink{flink},
		OutputDirectorySymlinks: []*repb.OutputSymlink{dlink},
		OutputSymlinks:          []*repb.OutputSymlink{flink, dlink},
		OutputDirectories:       res.GetOutputDirectories(), // checked below
	}
	if !proto.Equal(res, want) {
		t.Fatalf("result:\n%v\nwant:\n%v", res, want)
	}
	if len(res.GetOutputDirectories()) != 1 || res.GetOutputDirectories()[0].GetPath() != "gen" {
		t.Fatalf("output directories: %v", res.GetOutputDirectories())
	}
	wantTree := []string{
		`abs@ -> /etc/passwd`,
		`copy/`, `copy/link@ -> ../x.h`, `copy/y.h="#!y" exec=true`,
		`empty/`,
		`sub/`, `sub/link@ -> ../x.h`, `sub/y.h="#!y" exec=true`,
		`x.h="x" exec=false`,
	}
	if got := readTree(t, store, res.GetOutputDirectories()[0]); !slices.Equal(got, wantTree) {
		t.Fatalf("tree:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantTree, "\n"))
	}

	// One FindMissing; everything but the stored a.o sent once, the large
	// file streamed from disk.
	counts := store.Take()
	if counts.FindMissingCalls != 1 {
		t.Fatalf("FindMissing called %d times", counts.FindMissingCalls)
	}
	sent := counts.Sent()
	if slices.Contains(sent, digest.OfBytes([]byte("object a"))) {
		t.Fatal("uploaded a blob the store had")
	}
	// tool, big.bin, x.h, y.h; Directory messages: root, sub (= copy;
	// empty serializes to the empty blob, always present); the Tree.
	if len(sent) != 7 || counts.PutsFromFile != 1 || !slices.Contains(counts.Puts, digest.OfBytes([]byte(big))) {
		t.Fatalf("sent %d blobs (%d Puts, %d from files), want 7 with big.bin streamed", len(sent), len(counts.Puts), counts.PutsFromFile)
	}

	// Again: the same result, nothing sent.
	again, err := collectDir(t, ctx, root, cmd, store)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(again, res) {
		t.Fatal("collecting the same outputs twice gave different results")
	}
	if sent := store.Counts().Sent(); len(sent) != 0 {
		t.Fatalf("second Collect sent %v", sent)
	}
}

func TestCollectOutputPaths(t *testing.T) {
	ctx := storetest.Context(t)
	root := t.TempDir()
	build(t, root, map[string]string{
		"bin/tool":     "#!tool",
		"lib/a.so":     "a",
		"lib/sub/b.so": "b",
		"tolib@":       "lib",
		"totool@":      "bin/tool",
		"dangling@":    "/nonexistent/x",
	})
	store := newCountingStore()
	cmd := &repb.Command{OutputPaths: []string{"absent", "bin/tool", "dangling", "lib", "tolib", "totool"}, OutputFiles: []string{"lib/a.so"}}
	res, err := collectDir(t, ctx, root, cmd, store)
	if err != nil {
		t.Fatal(err)
	}
	tolib := &repb.OutputSymlink{Path: "tolib", Target: "lib"}
	totool := &repb.OutputSymlink{Path: "totool", Target: "bin/tool"}
	dangling := &repb.OutputSymlink{Path: "dangling", Target: "/nonexistent/x"}
	want := &repb.ActionResult{
		OutputFiles:             []*repb.OutputFile{{Path: "bin/tool", Digest: fileDigest("#!tool"), IsExecutable: true}},
		OutputDirectories:       res.GetOutputDirectories(),
		OutputSymlinks:          []*repb.OutputSymlink{dangling, tolib, totool},
		OutputFileSymlinks:      []*repb.OutputSymlink{dangling, totool},
		OutputDirectorySymlinks: []*repb.OutputSymlink{tolib},
	}
	if !proto.Equal(res, want) {
		t.Fatalf("result:\n%v\nwant:\n%v", res, want)
	}
	if len(res.GetOutputDirectories()) != 1 || res.GetOutputDirectories()[0].GetPath() != "lib" {
		t.Fatalf("output directories: %v", res.GetOutputDirectories())
	}
	wantTree := []string{`a.so="a" exec=false`, `sub/`, `sub/b.so="b" exec=false`}
	if got := readTree(t, store, res.GetOutputDirectories()[0]); !slices.Equal(got, wantTree) {
		t.Fatalf("tree %v, want %v", got, wantTree)
	}
}

func TestCollectWholeWorkingDirectory(t *testing.T) {
	ctx := storetest.Context(t)
	root := t.TempDir()
	build(t, root, map[string]string{"wd/f": "f", "other/g": "g"})
	store := newCountingStore()
	res, err := collectDir(t, ctx, root, &repb.Command{WorkingDirectory: "wd", OutputDirectories: []string{""}}, store)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.GetOutputDirectories()) != 1 || res.GetOutputDirectories()[0].GetPath() != "" {
		t.Fatalf("output directories: %v", res.GetOutputDirectories())
	}
	if got := readTree(t, store, res.GetOutputDirectories()[0]); !slices.Equal(got, []string{`f="f" exec=false`}) {
		t.Fatalf("tree %v", got)
	}
}

func TestCollectWrongTypes(t *testing.T) {
	ctx := storetest.Context(t)
	root := t.TempDir()
	build(t, root, map[string]string{"d/f": "f", "file": "x"})
	for _, cmd := range []*repb.Command{
		{OutputFiles: []string{"d"}},
		{OutputDirectories: []string{"file"}},
	} {
		if _, err := collectDir(t, ctx, root, cmd, newCountingStore()); !errors.Is(err, ErrWrongType) {
			t.Errorf("Collect(%v): %v, want ErrWrongType", cmd, err)
		}
	}
	// A FIFO has no REAPI form, as an output or inside one.
	if err := syscall.Mkfifo(filepath.Join(root, "d", "pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []*repb.Command{
		{OutputPaths: []string{"d/pipe"}},
		{OutputDirectories: []string{"d"}},
	} {
		if _, err := collectDir(t, ctx, root, cmd, newCountingStore()); err == nil || !strings.Contains(err.Error(), "cannot represent") {
			t.Errorf("Collect(%v): %v, want a refusal of the FIFO", cmd, err)
		}
	}
}

// TestCollectRefusesEscapes checks that outputs reached through symlinks
// leaving the input root are refused and nothing is uploaded.
func TestCollectRefusesEscapes(t *testing.T) {
	ctx := storetest.Context(t)
	base := t.TempDir()
	build(t, base, map[string]string{
		"secret/key":   "private key",
		"root/wd/abs@": filepath.Join(base, "secret"),
		"root/wd/rel@": "../../secret",
		"root/ok.o":    "ok",
	})
	root := filepath.Join(base, "root")
	for _, cmd := range []*repb.Command{
		{WorkingDirectory: "wd", OutputFiles: []string{"abs/key"}},
		{WorkingDirectory: "wd", OutputFiles: []string{"rel/key"}},
		{WorkingDirectory: "wd", OutputPaths: []string{"rel/key"}},
		{WorkingDirectory: "wd/rel", OutputFiles: []string{"key"}},
		{OutputFiles: []string{"ok.o", "../secret/key"}},
	} {
		store := newCountingStore()
		_, err := collectDir(t, ctx, root, cmd, store)
		if err == nil {
			t.Errorf("Collect(%v) succeeded", cmd)
		}
		if sent := store.Counts().Sent(); len(sent) != 0 {
			t.Errorf("Collect(%v) uploaded %v", cmd, sent)
		}
	}
	// The escaping symlinks themselves are fine as outputs.
	res, err := collectDir(t, ctx, root, &repb.Command{WorkingDirectory: "wd", OutputFiles: []string{"rel"}}, newCountingStore())
	if err != nil || len(res.GetOutputFileSymlinks()) != 1 {
		t.Fatalf("symlink output: %v, %v", res, err)
	}
}

func TestCollectRejectsBadDeclarations(t *testing.T) {
	ctx := storetest.Context(t)
	_, err := collectDir(t, ctx, t.TempDir(), &repb.Command{OutputFiles: []string{"/etc/passwd"}}, newCountingStore())
	if !errors.Is(err, inputs.ErrBadOutput) {
		t.Fatalf("absolute output: %v", err)
	}
}

func TestUploadFile(t *testing.T) {
	ctx := storetest.Context(t)
	name := filepath.Join(t.TempDir(), "stdout")
	if err := os.WriteFile(name, []byte("compiler says hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	store := newCountingStore()
	for range 2 {
		d, err := UploadFile(ctx, store, name)
		if err != nil || d != digest.OfBytes([]byte("compiler says hi\n")) {
			t.Fatalf("UploadFile = %v, %v", d, err)
		}
	}
	if sent := store.Counts().Sent(); len(sent) != 1 {
		t.Fatalf("sent %v, want one upload", sent)
	}
	got, err := cas.ReadAll(ctx, store, digest.OfBytes([]byte("compiler says hi\n")))
	if err != nil || string(got) != "compiler says hi\n" {
		t.Fatalf("stored %q, %v", got, err)
	}
}
