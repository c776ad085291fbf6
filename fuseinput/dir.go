package fuseinput

import (
	"context"
	"os"
	"sort"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// The directory operations of the file system. Each loads the directories
// it touches (a Directory message read once per tree) before taking the
// tree's lock, changes the tree under the lock, records what the action did,
// and calls into go-fuse only after releasing it.
//
// Fetches from the CAS run under the tree's context (bgCtx), not the
// request's: the kernel interrupts a request for any signal its caller
// catches (SIGCHLD under make, say), and a fetch cut short would fail a
// system call that the caller never sees restarted. The tree's context
// ends when the action has.

// Lookup implements gofs.NodeLookuper.
func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	t := n.t
	if err := t.load(t.bgCtx, n); err != nil {
		return nil, errno(err)
	}
	t.mu.Lock()
	c := n.children[name]
	if c == nil {
		add(t.access.missing, n.childPath(name))
		t.mu.Unlock()
		return nil, syscall.ENOENT
	}
	e := c.fill(&out.Attr)
	t.mu.Unlock()
	if e != 0 {
		return nil, e
	}
	return n.NewPersistentInode(ctx, c, c.stable()), 0
}

// Readdir implements gofs.NodeReaddirer.
func (n *node) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	t := n.t
	if err := t.load(t.bgCtx, n); err != nil {
		return nil, errno(err)
	}
	t.mu.Lock()
	list := make([]fuse.DirEntry, 0, len(n.children))
	for name, c := range n.children {
		list = append(list, fuse.DirEntry{Name: name, Ino: c.ino, Mode: c.typeBits()})
	}
	add(t.access.listed, n.relPath())
	t.mu.Unlock()
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	return gofs.NewListDirStream(list), 0
}

// prepareNew checks that name may be created in n, loaded. Caller holds
// t.mu.
func (n *node) prepareNew(ctx context.Context, name string) syscall.Errno {
	if n.parent == nil && n != n.t.root {
		return syscall.ENOENT // the directory was removed
	}
	if n.children[name] != nil {
		return syscall.EEXIST
	}
	return 0
}

// newEntry makes the entry name of kind k in n for Mkdir, Create and
// Symlink: setup completes it under t.mu before anything else can see it;
// when setup fails, the entry is taken away again.
func (n *node) newEntry(ctx context.Context, name string, k kind, perm uint32, out *fuse.EntryOut, setup func(c *node) syscall.Errno) (*gofs.Inode, syscall.Errno) {
	t := n.t
	if err := t.load(t.bgCtx, n); err != nil {
		return nil, errno(err)
	}
	t.mu.Lock()
	if e := n.prepareNew(ctx, name); e != 0 {
		t.mu.Unlock()
		return nil, e
	}
	c := t.newLocked(n, name, k, perm)
	if e := setup(c); e != 0 {
		delete(n.children, name)
		t.mu.Unlock()
		return nil, e
	}
	add(t.access.created, c.relPath())
	c.fill(&out.Attr)
	t.mu.Unlock()
	return n.NewPersistentInode(ctx, c, c.stable()), 0
}

// Mkdir implements gofs.NodeMkdirer.
func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return n.newEntry(ctx, name, kindDir, mode, out, func(*node) syscall.Errno { return 0 })
}

// Create implements gofs.NodeCreater: a new file, in the tree's layer.
func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	t := n.t
	var h *handle
	in, e := n.newEntry(ctx, name, kindFile, mode, out, func(c *node) syscall.Errno {
		upper := t.upperFileLocked()
		f, err := openFile(upper, os.O_RDWR|os.O_CREATE|os.O_EXCL)
		if err != nil {
			return errno(err)
		}
		c.upper, c.created = upper, true
		add(t.access.written, c.relPath())
		h = t.newHandleLocked(c, f, false)
		return 0
	})
	if e != 0 {
		return nil, nil, 0, e
	}
	return in, h, 0, 0
}

// Mknod implements gofs.NodeMknoder: regular files only. Devices, fifos
// and sockets have no place in an action's outputs.
func (n *node) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if mode&syscall.S_IFMT != syscall.S_IFREG && mode&syscall.S_IFMT != 0 {
		return nil, syscall.EPERM
	}
	in, h, _, e := n.Create(ctx, name, syscall.O_WRONLY, mode, out)
	if e == 0 {
		h.(*handle).Release(ctx)
	}
	return in, e
}

// Symlink implements gofs.NodeSymlinker.
func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return n.newEntry(ctx, name, kindSymlink, 0o777, out, func(c *node) syscall.Errno {
		c.target = target
		return 0
	})
}

// Link implements gofs.NodeLinker: hard links are not supported (an entry
// has one path, which is what outputs and the access log name), and fail
// as on file systems without them.
func (n *node) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}

// Unlink implements gofs.NodeUnlinker.
func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	return n.remove(ctx, name, false)
}

// Rmdir implements gofs.NodeRmdirer.
func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	return n.remove(ctx, name, true)
}

func (n *node) remove(ctx context.Context, name string, dir bool) syscall.Errno {
	t := n.t
	if err := t.load(t.bgCtx, n); err != nil {
		return errno(err)
	}
	t.mu.Lock()
	c := n.children[name]
	t.mu.Unlock()
	if c == nil {
		return syscall.ENOENT
	}
	if dir {
		if err := t.load(t.bgCtx, c); err != nil {
			return errno(err)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if n.children[name] != c {
		return syscall.EAGAIN // changed meanwhile; the kernel serializes this, so it does not happen
	}
	switch {
	case dir && c.kind != kindDir:
		return syscall.ENOTDIR
	case !dir && c.kind == kindDir:
		return syscall.EISDIR
	case dir && len(c.children) > 0:
		return syscall.ENOTEMPTY
	}
	add(t.access.deleted, c.relPath())
	t.detachLocked(c)
	return 0
}

// detachLocked takes c out of the tree. Its layer file goes once no handle
// of it is open: fstat of an open removed file still asks the file system.
func (t *Tree) detachLocked(c *node) {
	delete(c.parent.children, c.name)
	c.parent = nil
	t.dropLayerFileLocked(c)
}

// dropLayerFileLocked removes the layer file of n once n is out of the
// tree and no handle of it is open: a removed temporary file gives its
// space back while the action runs.
func (t *Tree) dropLayerFileLocked(n *node) {
	if n.parent != nil || n == t.root || n.open > 0 || n.upper == "" {
		return
	}
	os.Remove(n.upper)
	n.upper = ""
}

// Rename implements gofs.NodeRenamer, with RENAME_NOREPLACE and
// RENAME_EXCHANGE.
func (n *node) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	t := n.t
	np, ok := newParent.(*node)
	if !ok || np.t != t {
		return syscall.EXDEV
	}
	if flags&^(unix.RENAME_NOREPLACE|unix.RENAME_EXCHANGE) != 0 {
		return syscall.EINVAL
	}
	for _, d := range []*node{n, np} {
		if err := t.load(t.bgCtx, d); err != nil {
			return errno(err)
		}
	}
	// A directory replaced must be empty: load it to know.
	t.mu.Lock()
	dst := np.children[newName]
	t.mu.Unlock()
	if dst != nil && dst.kind == kindDir {
		if err := t.load(t.bgCtx, dst); err != nil {
			return errno(err)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	src := n.children[name]
	if src == nil {
		return syscall.ENOENT
	}
	if np.children[newName] != dst {
		return syscall.EAGAIN // the kernel serializes renames; not reached
	}
	for a := np; a != nil; a = a.parent {
		if a == src {
			return syscall.EINVAL // into itself
		}
	}
	from, to := src.relPath(), np.childPath(newName)
	if flags&unix.RENAME_EXCHANGE != 0 {
		if dst == nil {
			return syscall.ENOENT
		}
		n.children[name], np.children[newName] = dst, src
		dst.parent, dst.name = n, name
		src.parent, src.name = np, newName
		t.access.renamed = append(t.access.renamed, Rename{From: from, To: to}, Rename{From: to, To: from})
		return 0
	}
	if dst == src {
		return 0
	}
	if dst != nil {
		switch {
		case flags&unix.RENAME_NOREPLACE != 0:
			return syscall.EEXIST
		case src.kind == kindDir && dst.kind != kindDir:
			return syscall.ENOTDIR
		case src.kind != kindDir && dst.kind == kindDir:
			return syscall.EISDIR
		case dst.kind == kindDir && len(dst.children) > 0:
			return syscall.ENOTEMPTY
		}
		add(t.access.deleted, to)
		t.detachLocked(dst)
	}
	delete(n.children, name)
	src.parent, src.name = np, newName
	np.children[newName] = src
	t.access.renamed = append(t.access.renamed, Rename{From: from, To: to})
	return 0
}
