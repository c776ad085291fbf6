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
// worker's memory and its per-action layer of writes.
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
type KnownDigests interface {
	KnownDigest(name string) (digest.Digest, bool)
}
