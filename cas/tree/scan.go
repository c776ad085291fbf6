package tree

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"golang.org/x/sync/errgroup"

	"github.com/mound-build/mound/cas/digest"
)

// hashParallelism is how many files are hashed at once: SHA-256 keeps a core
// busy, so one per core, and at least two so that one file's disk reads
// overlap another's hashing.
var hashParallelism = max(2, runtime.GOMAXPROCS(0))

// localFile is a regular file of a scanned directory.
type localFile struct {
	path string
	exec bool
	d    digest.Digest // set by hashing
}

// localDir is a scanned directory, entries in name order.
type localDir struct {
	path  string
	files []namedFile
	dirs  []namedDir
	links []*repb.SymlinkNode
}

type namedFile struct {
	name string
	file *localFile
}

type namedDir struct {
	name string
	dir  *localDir
}

// local is a directory on disk as REAPI blobs.
type local struct {
	root  digest.Digest
	dirs  map[digest.Digest][]byte // serialized Directory messages
	files map[digest.Digest]string // one path for each distinct file content
	stats UploadStats
}

// scan reads the directory tree at root, hashes its files and serializes
// its Directory messages.
func scan(ctx context.Context, root string) (*local, error) {
	var files []*localFile
	top, err := scanDir(ctx, root, &files)
	if err != nil {
		return nil, err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(hashParallelism)
	for _, f := range files {
		g.Go(func() error { return hashFile(gctx, f) })
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	l := &local{dirs: map[digest.Digest][]byte{}, files: map[digest.Digest]string{}}
	if l.root, err = l.add(top); err != nil {
		return nil, err
	}
	l.stats.Root = l.root
	l.stats.Blobs = len(l.dirs) + len(l.files)
	return l, nil
}

// scanDir lists dir and its subdirectories, appending regular files to
// files for hashing.
func scanDir(ctx context.Context, dir string, files *[]*localFile) (*localDir, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	d := &localDir{path: dir}
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		switch t := e.Type(); {
		case t.IsDir():
			sub, err := scanDir(ctx, path, files)
			if err != nil {
				return nil, err
			}
			d.dirs = append(d.dirs, namedDir{e.Name(), sub})
		case t&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return nil, err
			}
			d.links = append(d.links, &repb.SymlinkNode{Name: e.Name(), Target: target})
		case t.IsRegular():
			info, err := e.Info()
			if err != nil {
				return nil, err
			}
			f := &localFile{path: path, exec: info.Mode()&0o111 != 0}
			*files = append(*files, f)
			d.files = append(d.files, namedFile{e.Name(), f})
		default:
			return nil, fmt.Errorf("%s: %v is not a file, directory or symlink; a REAPI tree cannot hold it", path, t)
		}
	}
	return d, nil
}

func hashFile(ctx context.Context, f *localFile) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r, err := os.Open(f.path)
	if err != nil {
		return err
	}
	defer r.Close()
	if f.d, err = digest.OfReader(r); err != nil {
		return fmt.Errorf("hash %s: %w", f.path, err)
	}
	return nil
}

// add serializes dir's Directory message after its subdirectories' and
// records the blobs; it returns the message's digest.
func (l *local) add(dir *localDir) (digest.Digest, error) {
	m := &repb.Directory{Symlinks: dir.links}
	for _, f := range dir.files {
		m.Files = append(m.Files, &repb.FileNode{Name: f.name, Digest: f.file.d.Proto(), IsExecutable: f.file.exec})
		if _, ok := l.files[f.file.d]; !ok {
			l.files[f.file.d] = f.file.path
		}
		l.stats.Files++
		l.stats.Bytes += f.file.d.Size
	}
	for _, sub := range dir.dirs {
		d, err := l.add(sub.dir)
		if err != nil {
			return digest.Digest{}, err
		}
		m.Directories = append(m.Directories, &repb.DirectoryNode{Name: sub.name, Digest: d.Proto()})
	}
	l.stats.Dirs++
	l.stats.Symlinks += len(dir.links)
	// REAPI wants each list sorted by name. os.ReadDir sorts already; sort
	// here so the message never depends on how the listing was made.
	slices.SortFunc(m.Files, func(a, b *repb.FileNode) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(m.Directories, func(a, b *repb.DirectoryNode) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(m.Symlinks, func(a, b *repb.SymlinkNode) int { return strings.Compare(a.Name, b.Name) })
	b, d, err := digest.OfMessage(m)
	if err != nil {
		return digest.Digest{}, fmt.Errorf("directory %s: %w", dir.path, err)
	}
	l.dirs[d] = b
	return d, nil
}
