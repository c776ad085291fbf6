package tree

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/cas/memstore"
	"github.com/mound-build/mound/cas/storetest"
)

// TestHostileTrees downloads malformed or malicious trees and checks that
// each fails with a clear error, leaves its target as it was, and writes
// nothing beside it.
func TestHostileTrees(t *testing.T) {
	s := memstore.New()
	content := storetest.Put(t, s, []byte("pwned\n"))
	file := func(name string) *repb.FileNode { return &repb.FileNode{Name: name, Digest: content.Proto()} }
	inner := storetest.PutMessage(t, s, &repb.Directory{Files: []*repb.FileNode{file("passwd")}})
	dirNode := func(name string, d digest.Digest) *repb.DirectoryNode {
		return &repb.DirectoryNode{Name: name, Digest: d.Proto()}
	}
	absent := digest.OfBytes([]byte("not stored"))

	// A chain of directories deeper than MaxDepth.
	deep := digest.Empty
	for range MaxDepth + 1 {
		deep = storetest.PutMessage(t, s, &repb.Directory{Directories: []*repb.DirectoryNode{dirNode("d", deep)}})
	}
	// A small DAG whose paths number 1000^3.
	bomb := digest.Empty
	for range 3 {
		m := &repb.Directory{}
		for i := range 1000 {
			m.Directories = append(m.Directories, dirNode(fmt.Sprintf("d%03d", i), bomb))
		}
		bomb = storetest.PutMessage(t, s, m)
	}

	tests := []struct {
		name    string
		root    digest.Digest
		wantErr error
		wantMsg string
	}{
		{"file named ..", storetest.PutMessage(t, s, &repb.Directory{Files: []*repb.FileNode{file("..")}}), ErrInvalid, `file name ".." names a directory itself or its parent`},
		{"directory named ..", storetest.PutMessage(t, s, &repb.Directory{Directories: []*repb.DirectoryNode{dirNode("..", inner)}}), ErrInvalid, `directory name ".."`},
		{"file named .", storetest.PutMessage(t, s, &repb.Directory{Files: []*repb.FileNode{file(".")}}), ErrInvalid, `file name "."`},
		{"empty name", storetest.PutMessage(t, s, &repb.Directory{Files: []*repb.FileNode{file("")}}), ErrInvalid, `file name "" is empty`},
		{"name with a slash", storetest.PutMessage(t, s, &repb.Directory{Files: []*repb.FileNode{file("../../escaped")}}), ErrInvalid, "contains a slash"},
		{"NUL in a name", storetest.PutMessage(t, s, &repb.Directory{Files: []*repb.FileNode{file("a\x00b")}}), ErrInvalid, "contains a NUL byte"},
		{"empty symlink target", storetest.PutMessage(t, s, &repb.Directory{Symlinks: []*repb.SymlinkNode{{Name: "l", Target: ""}}}), ErrInvalid, `symlink "l": target "" is empty`},
		{"symlink with a slash", storetest.PutMessage(t, s, &repb.Directory{Symlinks: []*repb.SymlinkNode{{Name: "a/b", Target: "x"}}}), ErrInvalid, "contains a slash"},
		{"nested slash", storetest.PutMessage(t, s, &repb.Directory{Directories: []*repb.DirectoryNode{
			dirNode("ok", storetest.PutMessage(t, s, &repb.Directory{Files: []*repb.FileNode{file("etc/passwd")}})),
		}}), ErrInvalid, `directory "ok"`},
		{"symlink and directory with one name", storetest.PutMessage(t, s, &repb.Directory{
			Directories: []*repb.DirectoryNode{dirNode("x", inner)},
			Symlinks:    []*repb.SymlinkNode{{Name: "x", Target: "/etc"}},
		}), ErrInvalid, `name "x" is both a directory and a symlink`},
		{"two files with one name", storetest.PutMessage(t, s, &repb.Directory{Files: []*repb.FileNode{file("a"), file("a")}}), ErrInvalid, `name "a" is both a file and a file`},
		{"bad file digest", storetest.PutMessage(t, s, &repb.Directory{Files: []*repb.FileNode{{Name: "f", Digest: &repb.Digest{Hash: "zz", SizeBytes: 1}}}}), ErrInvalid, `file "f"`},
		{"not a Directory", storetest.Put(t, s, []byte("\xff\xff\xff garbage")), ErrInvalid, "not a Directory message"},
		{"missing root", absent, cas.ErrNotFound, "not found"},
		{"missing subdirectory", storetest.PutMessage(t, s, &repb.Directory{Directories: []*repb.DirectoryNode{dirNode("sub", absent)}}), cas.ErrNotFound, `directory "sub"`},
		{"missing file blob", storetest.PutMessage(t, s, &repb.Directory{
			Files:       []*repb.FileNode{{Name: "gone", Digest: absent.Proto()}},
			Directories: []*repb.DirectoryNode{dirNode("etc", inner)},
		}), cas.ErrNotFound, "gone"},
		{"too deep", deep, ErrInvalid, "deeper"},
		{"too many paths", bomb, ErrInvalid, "entries"},
	}
	for _, tc := range tests {
		for _, existing := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/existing=%v", tc.name, existing), func(t *testing.T) {
				parent := t.TempDir()
				target := filepath.Join(parent, "target")
				if existing {
					if err := os.Mkdir(target, 0o755); err != nil {
						t.Fatal(err)
					}
				}
				err := Download(storetest.Context(t), s, tc.root, target)
				if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.wantMsg) {
					t.Fatalf("Download: %v; want an error wrapping %q that mentions %q", err, tc.wantErr, tc.wantMsg)
				}
				t.Log(err)
				entries, _ := os.ReadDir(parent)
				var names []string
				for _, e := range entries {
					names = append(names, e.Name())
				}
				if want := map[bool]int{false: 0, true: 1}[existing]; len(names) != want {
					t.Fatalf("after a failed download the parent holds %v", names)
				}
				if existing {
					if inside, _ := os.ReadDir(target); len(inside) != 0 {
						t.Fatalf("after a failed download the target holds %d entries", len(inside))
					}
				}
			})
		}
	}
}

func TestWriteRefusesNonEmptyTarget(t *testing.T) {
	s := memstore.New()
	target := t.TempDir()
	if err := os.WriteFile(filepath.Join(target, "keep"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := storetest.PutMessage(t, s, &repb.Directory{Files: []*repb.FileNode{{Name: "keep", Digest: digest.Empty.Proto()}}})
	err := Download(storetest.Context(t), s, root, target)
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("Download into a non-empty directory: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(target, "keep")); string(b) != "mine" {
		t.Fatal("the existing file was changed")
	}
}
