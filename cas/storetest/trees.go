package storetest

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/mound-build/mound/cas/digest"
)

// ListTree describes every entry under root, root itself included as ".",
// by its path relative to root: "dir", "symlink <target>", or a file's
// permissions and digest ("-rwxr-xr-x <digest>"). An error fails the test.
func ListTree(t testing.TB, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
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
			info, err := e.Info()
			if err != nil {
				return err
			}
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

// CompareTrees fails the test, naming each difference, unless the trees at
// want and got hold the same entries (see ListTree): the same content,
// permissions of files and symlink targets.
func CompareTrees(t testing.TB, want, got string) {
	t.Helper()
	lw, lg := ListTree(t, want), ListTree(t, got)
	for p, v := range lw {
		if lg[p] != v {
			t.Errorf("%s: %q in %s, %q in %s", p, v, want, lg[p], got)
		}
	}
	for p, v := range lg {
		if _, ok := lw[p]; !ok {
			t.Errorf("%s: only in %s (%q)", p, got, v)
		}
	}
}
