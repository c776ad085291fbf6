package inputs

import (
	"context"
	"errors"
	"time"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/cas/tree"
)

// ErrInvalid is wrapped by every error for an input tree that is malformed
// or would write outside its directory. It is tree.ErrInvalid: the checks
// are package tree's, so errors.Is holds for either name.
var ErrInvalid = tree.ErrInvalid

// InputTree presents an action's input root as a directory.
type InputTree interface {
	// Prepare makes the tree whose root Directory is root appear at dir,
	// which must be absent (its parent present) or an empty directory.
	// Nothing is written outside dir, whatever the tree holds. A blob
	// missing from the CAS is an error wrapping cas.ErrNotFound (and the
	// store's cas.MissingError) that names the path it was needed for; a
	// malformed or hostile tree wraps ErrInvalid. On error, what Prepare
	// created under dir is removed. Safe for concurrent use with different
	// dirs.
	Prepare(ctx context.Context, root digest.Digest, dir string) (Stats, error)
}

// Source is where an input tree's parts come from.
type Source struct {
	// Directories serves the tree's Directory messages, typically the
	// remote CAS (which verifies what it receives). BatchGetter is used
	// when it has it.
	Directories cas.BlobGetter
	// Files gives local files with the content of the tree's files,
	// typically a blobcache.Cache.
	Files FileCache
}

// FileCache gives local files holding blobs. blobcache.Cache is one.
type FileCache interface {
	// Path returns the name of a read-only file with d's content, with
	// mode 0555 when executable is set and 0444 otherwise. The file may
	// disappear (be evicted) after Path returns; asking again brings it
	// back.
	Path(ctx context.Context, d digest.Digest, executable bool) (string, error)
}

// Stats describe a prepared input tree.
type Stats struct {
	// Files, Dirs (the root included) and Symlinks count the tree's
	// entries, per path; Bytes is the size of all its files.
	Files, Dirs, Symlinks int
	Bytes                 int64
	// Contents counts the distinct blobs (content and mode) of the files.
	Contents int
	// ReadTime is the time spent reading and checking the Directory
	// messages; FetchTime the time spent getting the files' contents into
	// the cache and placing them.
	ReadTime, FetchTime time.Duration
}

// HardlinkTree is the eager InputTree: it creates the directories and
// symlinks and hardlinks every file from a FileCache.
type HardlinkTree struct {
	src Source
}

// Interfaces HardlinkTree implements.
var _ InputTree = (*HardlinkTree)(nil)

// NewHardlinkTree returns an InputTree taking the tree from src.
func NewHardlinkTree(src Source) (*HardlinkTree, error) {
	if src.Directories == nil || src.Files == nil {
		return nil, errors.New("inputs: Source.Directories and Source.Files are required")
	}
	return &HardlinkTree{src: src}, nil
}

// Materialize prepares the input tree root at dir with a HardlinkTree on
// src: see InputTree.Prepare.
func Materialize(ctx context.Context, src Source, root digest.Digest, dir string) (Stats, error) {
	t, err := NewHardlinkTree(src)
	if err != nil {
		return Stats{}, err
	}
	return t.Prepare(ctx, root, dir)
}

// Prepare implements InputTree: it reads and checks the whole tree
// (tree.Fetch), then lays it out with tree.Tree.Create: the directories,
// the files (each distinct content and mode fetched once,
// fetchParallelism at a time, and hardlinked from the cache) and the
// symlinks, in that order.
func (t *HardlinkTree) Prepare(ctx context.Context, root digest.Digest, dir string) (Stats, error) {
	start := time.Now()
	tr, err := tree.Fetch(ctx, t.src.Directories, root)
	if err != nil {
		return Stats{}, err
	}
	stats := Stats{
		Files:    int(tr.Files),
		Dirs:     int(tr.Dirs),
		Symlinks: int(tr.Symlinks),
		Bytes:    tr.Bytes,
		ReadTime: time.Since(start),
	}
	err = tr.Create(ctx, dir, func(ctx context.Context, dir string, files []tree.Contents) error {
		start := time.Now()
		p := byMode(files)
		stats.Contents = len(p.order)
		err := p.placeFiles(ctx, t.src.Files, dir)
		stats.FetchTime = time.Since(start)
		return err
	})
	if err != nil {
		return Stats{}, err
	}
	return stats, nil
}
