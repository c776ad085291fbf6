package tree

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"github.com/mound-build/mound/cas/digest"
)

// dirMode is the mode of the directories Create makes, whatever the umask.
const dirMode fs.FileMode = 0o755

// File is one file of a Tree.
type File struct {
	// Path is where the file goes, slash-separated and relative to the
	// directory the tree is created in.
	Path       string
	Executable bool
}

// Contents is one distinct file content of a Tree and every file holding
// it, in tree order.
type Contents struct {
	Digest digest.Digest
	Files  []File
}

// PlaceFunc creates the files of a tree under dir: every File of every
// Contents, with that content. When Create calls it, the directories exist
// and none of the files do. It must create nothing but those paths, and
// not replace them (O_EXCL, link(2)), so that nothing is written outside
// dir. On error Create removes whatever was made.
type PlaceFunc func(ctx context.Context, dir string, files []Contents) error

// Create lays t out under dir, which must be absent (its parent present) or
// an empty directory: it makes the directories (mode 0755 whatever the
// umask), calls place once with the files grouped by content (in tree
// order), then creates the symlinks with their targets as given, last, so
// that nothing is ever created through a link. Fetch checked every name,
// so as long as place keeps to its contract nothing is written outside dir.
// On error, what Create made under dir (and dir, when Create made it) is
// removed; an existing dir is left empty.
func (t *Tree) Create(ctx context.Context, dir string, place PlaceFunc) (err error) {
	created, err := prepare(dir)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			cleanup(dir, created)
		}
	}()
	l := &layout{byContent: map[digest.Digest]int{}}
	if err := t.mkdirs(ctx, t.Root, dir, ".", l); err != nil {
		return err
	}
	if err := place(ctx, dir, l.files); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, s := range l.links {
		if err := os.Symlink(s.target, filepath.Join(dir, s.path)); err != nil {
			return err
		}
	}
	return nil
}

// layout is what Create makes once the directories exist.
type layout struct {
	files     []Contents
	byContent map[digest.Digest]int // index in files
	links     []symlink
}

// symlink is a symlink of a tree, its path relative to the tree's
// directory.
type symlink struct {
	path, target string
}

// mkdirs creates the subdirectories of the Directory d, which is at rel
// under dir, and records its files and symlinks in l.
func (t *Tree) mkdirs(ctx context.Context, d digest.Digest, dir, rel string, l *layout) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m := t.dirs[d]
	for _, f := range m.GetFiles() {
		fd, _ := digest.FromProto(f.GetDigest()) // checked by Fetch
		i, ok := l.byContent[fd]
		if !ok {
			i = len(l.files)
			l.byContent[fd] = i
			l.files = append(l.files, Contents{Digest: fd})
		}
		l.files[i].Files = append(l.files[i].Files, File{Path: path.Join(rel, f.GetName()), Executable: f.GetIsExecutable()})
	}
	for _, sub := range m.GetDirectories() {
		sd, _ := digest.FromProto(sub.GetDigest())
		subRel := path.Join(rel, sub.GetName())
		name := filepath.Join(dir, subRel)
		if err := os.Mkdir(name, dirMode); err != nil {
			return err
		}
		if err := os.Chmod(name, dirMode); err != nil {
			return err
		}
		if err := t.mkdirs(ctx, sd, dir, subRel, l); err != nil {
			return err
		}
	}
	for _, s := range m.GetSymlinks() {
		l.links = append(l.links, symlink{path: path.Join(rel, s.GetName()), target: s.GetTarget()})
	}
	return nil
}

// prepare makes dir, or checks that it is an empty directory, and reports
// whether it made it.
func prepare(dir string) (created bool, err error) {
	err = os.Mkdir(dir, dirMode)
	if err == nil {
		return true, os.Chmod(dir, dirMode)
	}
	if !errors.Is(err, fs.ErrExist) {
		return false, err
	}
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	if info, err := f.Stat(); err != nil {
		return false, err
	} else if !info.IsDir() {
		return false, fmt.Errorf("%s exists and is not a directory", dir)
	}
	if names, err := f.Readdirnames(1); len(names) > 0 {
		return false, fmt.Errorf("%s exists and is not empty", dir)
	} else if err != nil && err != io.EOF {
		return false, err
	}
	return false, nil
}

// cleanup removes what a failed Create made in dir.
func cleanup(dir string, created bool) {
	if created {
		os.RemoveAll(dir)
		return
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}
