package fuseinput

import (
	"fmt"
	"io/fs"
	"os"
	"sort"

	"github.com/mound-build/mound/cas/digest"
)

// The Tree is the outputs.View of the action's root after it ran: the
// mount exists only in the sandbox, so the worker reads the tree's entries
// from memory and file contents from the local cache and the layer. Names
// are slash-separated and relative to the root; symlinks on the way are
// followed inside the tree, never out of it.

// Lstat describes name without following a final symlink.
func (t *Tree) Lstat(name string) (fs.FileInfo, error) {
	n, err := t.resolve(t.viewCtx, name, false)
	if err != nil {
		return nil, &fs.PathError{Op: "lstat", Path: name, Err: err}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	fi, err := n.info()
	if err != nil {
		return nil, &fs.PathError{Op: "lstat", Path: name, Err: err}
	}
	return fi, nil
}

// ReadDir lists the directory name, sorted by name.
func (t *Tree) ReadDir(name string) ([]fs.DirEntry, error) {
	n, err := t.resolve(t.viewCtx, name, true)
	if err == nil && n.kind != kindDir {
		err = fmt.Errorf("not a directory")
	}
	if err == nil {
		err = t.load(t.viewCtx, n)
	}
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	entries := make([]fs.DirEntry, 0, len(n.children))
	for _, c := range n.children {
		fi, err := c.info()
		if err != nil {
			return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
		}
		entries = append(entries, fs.FileInfoToDirEntry(fi))
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	return entries, nil
}

// Readlink returns the target of the symlink name.
func (t *Tree) Readlink(name string) (string, error) {
	n, err := t.resolve(t.viewCtx, name, false)
	if err == nil && n.kind != kindSymlink {
		err = fmt.Errorf("not a symlink")
	}
	if err != nil {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: err}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return n.target, nil
}

// Open opens the regular file name for reading; the caller closes it.
func (t *Tree) Open(name string) (*os.File, error) {
	n, err := t.resolve(t.viewCtx, name, true)
	if err == nil && n.kind != kindFile {
		err = fmt.Errorf("not a regular file")
	}
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	t.mu.Lock()
	upper, d, exec, origin := n.upper, n.d, n.exec, n.origin
	t.mu.Unlock()
	if upper != "" {
		return openFile(upper, os.O_RDONLY)
	}
	return t.content(t.viewCtx, d, exec, origin)
}

// KnownDigest returns the digest of name while it is the unchanged input it
// was: outputs need not hash it again.
func (t *Tree) KnownDigest(name string) (digest.Digest, bool) {
	n, err := t.resolve(t.viewCtx, name, false)
	if err != nil {
		return digest.Digest{}, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if n.kind != kindFile || n.upper != "" {
		return digest.Digest{}, false
	}
	return n.d, true
}
