package outputs

import (
	"io/fs"
	"os"

	"github.com/mound-build/mound/cas/digest"
)

// View is an action's input root after it ran, as Collect reads it. Names
// are slash-separated, relative to the root ("." is the root), and never
// leave it. A directory of hardlinked inputs is a View (DirView); so is the
// lazy FUSE file system of package fuseinput, whose tree exists only in the
// worker's memory and its per-action layer of writes. Collect calls the
// methods from several goroutines at once.
type View interface {
	// Lstat describes name without following a final symlink.
	Lstat(name string) (fs.FileInfo, error)
	// ReadDir lists the directory name, sorted by name.
	ReadDir(name string) ([]fs.DirEntry, error)
	// Readlink returns the target of the symlink name.
	Readlink(name string) (string, error)
	// Open opens the regular file name for reading; the caller closes it.
	Open(name string) (*os.File, error)
}

// KnownDigests is an optional ability of a View: the digest of a file that
// is still the unchanged input it was, so Collect need not hash it again.
// Collect trusts it; it reads such a file only to upload it, if the store
// lacks it.
type KnownDigests interface {
	KnownDigest(name string) (digest.Digest, bool)
}

// DirView is a View of a directory on disk. It reads through an os.Root: a
// name whose way passes through a symlink leading out of the directory is
// an error, never followed, so an action cannot make the worker upload the
// worker's own files. It is safe for concurrent use.
type DirView struct {
	root *os.Root
}

// OpenDirView opens the directory dir as a View. The caller closes it.
func OpenDirView(dir string) (*DirView, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	return &DirView{root: root}, nil
}

// Lstat implements View.
func (v *DirView) Lstat(name string) (fs.FileInfo, error) { return v.root.Lstat(name) }

// ReadDir implements View.
func (v *DirView) ReadDir(name string) ([]fs.DirEntry, error) {
	return fs.ReadDir(v.root.FS(), name)
}

// Readlink implements View.
func (v *DirView) Readlink(name string) (string, error) { return v.root.Readlink(name) }

// Open implements View.
func (v *DirView) Open(name string) (*os.File, error) { return v.root.Open(name) }

// Close releases the directory.
func (v *DirView) Close() error { return v.root.Close() }
