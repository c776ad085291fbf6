package tree

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/cas/memstore"
)

// putMessage stores m in s and returns its digest.
func putMessage(t *testing.T, s cas.BlobPutter, m proto.Message) digest.Digest {
	t.Helper()
	b, d, err := digest.OfMessage(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(context.Background(), d, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	return d
}

func putBytes(t *testing.T, s cas.BlobPutter, b []byte) digest.Digest {
	t.Helper()
	d := digest.OfBytes(b)
	if err := s.Put(context.Background(), d, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestHostileTrees downloads malformed or malicious trees and checks that
// each fails with a clear error, leaves its target as it was, and writes
// nothing beside it.
func TestHostileTrees(t *testing.T) {
	s := memstore.New()
	content := putBytes(t, s, []byte("pwned\n"))
	file := func(name string) *repb.FileNode { return &repb.FileNode{Name: name, Digest: content.Proto()} }
	inner := putMessage(t, s, &repb.Directory{Files: []*repb.FileNode{file("passwd")}})
	dirNode := func(name string, d digest.Digest) *repb.DirectoryNode {
		return &repb.DirectoryNode{Name: name, Digest: d.Proto()}
	}
	absent := digest.OfBytes([]byte("not stored"))

	// A chain of directories deeper than maxDepth.
	deep := digest.Empty
	for range maxDepth + 1 {
		deep = putMessage(t, s, &repb.Directory{Directories: []*repb.DirectoryNode{dirNode("d", deep)}})
	}
	// A small DAG whose paths number 1000^3.
	bomb := digest.Empty
	for range 3 {
		m := &repb.Directory{}
		for i := range 1000 {
			m.Directories = append(m.Directories, dirNode(fmt.Sprintf("d%03d", i), bomb))
		}
		bomb = putMessage(t, s, m)
	}

	tests := []struct {
		name    string
		root    digest.Digest
		wantErr error
		wantMsg string
	}{
		{"file named ..", putMessage(t, s, &repb.Directory{Files: []*repb.FileNode{file("..")}}), ErrInvalid, `file ".."`},
		{"directory named ..", putMessage(t, s, &repb.Directory{Directories: []*repb.DirectoryNode{dirNode("..", inner)}}), ErrInvalid, `directory ".."`},
		{"file named .", putMessage(t, s, &repb.Directory{Files: []*repb.FileNode{file(".")}}), ErrInvalid, `file "."`},
		{"empty name", putMessage(t, s, &repb.Directory{Files: []*repb.FileNode{file("")}}), ErrInvalid, "empty name"},
		{"name with a slash", putMessage(t, s, &repb.Directory{Files: []*repb.FileNode{file("../../escaped")}}), ErrInvalid, "contains a slash"},
		{"symlink with a slash", putMessage(t, s, &repb.Directory{Symlinks: []*repb.SymlinkNode{{Name: "a/b", Target: "x"}}}), ErrInvalid, "contains a slash"},
		{"nested slash", putMessage(t, s, &repb.Directory{Directories: []*repb.DirectoryNode{
			dirNode("ok", putMessage(t, s, &repb.Directory{Files: []*repb.FileNode{file("etc/passwd")}})),
		}}), ErrInvalid, `directory "ok"`},
		{"symlink and directory with one name", putMessage(t, s, &repb.Directory{
			Directories: []*repb.DirectoryNode{dirNode("x", inner)},
			Symlinks:    []*repb.SymlinkNode{{Name: "x", Target: "/etc"}},
		}), ErrInvalid, "appears twice"},
		{"two files with one name", putMessage(t, s, &repb.Directory{Files: []*repb.FileNode{file("a"), file("a")}}), ErrInvalid, "appears twice"},
		{"bad file digest", putMessage(t, s, &repb.Directory{Files: []*repb.FileNode{{Name: "f", Digest: &repb.Digest{Hash: "zz", SizeBytes: 1}}}}), ErrInvalid, `file "f"`},
		{"not a Directory", putBytes(t, s, []byte("\xff\xff\xff garbage")), ErrInvalid, "not a Directory message"},
		{"missing root", absent, cas.ErrNotFound, "not found"},
		{"missing subdirectory", putMessage(t, s, &repb.Directory{Directories: []*repb.DirectoryNode{dirNode("sub", absent)}}), cas.ErrNotFound, `directory "sub"`},
		{"missing file blob", putMessage(t, s, &repb.Directory{
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
				err := Download(testContext(t), s, tc.root, target)
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
	root := putMessage(t, s, &repb.Directory{Files: []*repb.FileNode{{Name: "keep", Digest: digest.Empty.Proto()}}})
	err := Download(testContext(t), s, root, target)
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("Download into a non-empty directory: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(target, "keep")); string(b) != "mine" {
		t.Fatal("the existing file was changed")
	}
}
