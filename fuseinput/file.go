package fuseinput

import (
	"context"
	"io"
	"os"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Getattr implements gofs.NodeGetattrer.
func (n *node) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.t.mu.Lock()
	defer n.t.mu.Unlock()
	return n.fill(&out.Attr)
}

// Setattr implements gofs.NodeSetattrer: chmod, truncate and utimes; chown
// only to the owner every entry has.
func (n *node) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	t := n.t
	if uid, ok := in.GetUID(); ok && uid != t.fs.opts.UID {
		return syscall.EPERM
	}
	if gid, ok := in.GetGID(); ok && gid != t.fs.opts.GID {
		return syscall.EPERM
	}
	if size, ok := in.GetSize(); ok {
		if n.kind == kindDir {
			return syscall.EISDIR
		}
		if n.kind != kindFile {
			return syscall.EINVAL
		}
		t.mu.Lock()
		p, mayWrite := n.relPath(), isRoot(ctx) || n.perm&0o200 != 0 || fh != nil
		t.mu.Unlock()
		if !mayWrite {
			return syscall.EACCES
		}
		if e := n.copyUp(ctx, size > 0); e != 0 {
			return e
		}
		t.mu.Lock()
		err := os.Truncate(n.upper, int64(size))
		add(t.access.written, p)
		t.mu.Unlock()
		if err != nil {
			return errno(err)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if mode, ok := in.GetMode(); ok {
		n.perm = mode & 0o7777
		add(t.access.chmodded, n.relPath())
	}
	if mtime, ok := in.GetMTime(); ok {
		n.mtime = mtime
	}
	return n.fill(&out.Attr)
}

// Readlink implements gofs.NodeReadlinker.
func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	if n.kind != kindSymlink {
		return nil, syscall.EINVAL
	}
	n.t.mu.Lock()
	defer n.t.mu.Unlock()
	add(n.t.access.read, n.origin)
	return []byte(n.target), 0
}

// Access implements gofs.NodeAccesser with the owner's permission bits:
// the kernel checks none itself on this mount, and every entry is the
// caller's own.
func (n *node) Access(ctx context.Context, mask uint32) syscall.Errno {
	if isRoot(ctx) {
		return 0
	}
	n.t.mu.Lock()
	perm := n.perm
	n.t.mu.Unlock()
	if want := mask & 0o7; (perm>>6)&want != want {
		return syscall.EACCES
	}
	return 0
}

// Statfs implements gofs.NodeStatfser with the figures of the layer's file
// system, where the action's writes go.
func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	var st unix.Statfs_t
	if err := unix.Statfs(n.t.opts.Upper, &st); err != nil {
		return errno(err)
	}
	out.Blocks, out.Bfree, out.Bavail = st.Blocks, st.Bfree, st.Bavail
	out.Files, out.Ffree = st.Files, st.Ffree
	out.Bsize, out.Frsize, out.NameLen = uint32(st.Bsize), uint32(st.Frsize), 255
	return 0
}

// Open implements gofs.NodeOpener. Reading an input opens its file in the
// local cache (fetching it on first use); writing, or truncating, first
// copies the input into the tree's layer.
func (n *node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	t := n.t
	if n.kind != kindFile {
		return nil, 0, syscall.EISDIR
	}
	acc := flags & syscall.O_ACCMODE
	trunc := flags&syscall.O_TRUNC != 0
	write := acc != syscall.O_RDONLY || trunc
	t.mu.Lock()
	perm := n.perm
	t.mu.Unlock()
	if !isRoot(ctx) && ((write && perm&0o200 == 0) || (acc != syscall.O_WRONLY && perm&0o400 == 0)) {
		return nil, 0, syscall.EACCES
	}
	if write {
		t.mu.Lock()
		wasInput, origin := n.upper == "", n.origin
		t.mu.Unlock()
		if e := n.copyUp(ctx, !trunc); e != 0 {
			return nil, 0, e
		}
		f, err := openFile(n.upper, os.O_RDWR)
		if err == nil && trunc {
			err = f.Truncate(0)
		}
		if err != nil {
			if f != nil {
				f.Close()
			}
			return nil, 0, errno(err)
		}
		t.mu.Lock()
		defer t.mu.Unlock()
		if wasInput && !trunc && acc == syscall.O_RDWR {
			add(t.access.read, origin) // the old content is readable
		}
		add(t.access.written, n.relPath())
		return t.newHandleLocked(n, f, true), 0, 0
	}
	t.mu.Lock()
	upper, d, exec, origin := n.upper, n.d, n.exec, n.origin
	t.mu.Unlock()
	if upper != "" {
		f, err := openFile(upper, os.O_RDONLY)
		if err != nil {
			return nil, 0, errno(err)
		}
		t.mu.Lock()
		defer t.mu.Unlock()
		return t.newHandleLocked(n, f, false), 0, 0
	}
	f, err := t.content(ctx, d, exec, origin)
	if err != nil {
		return nil, 0, errno(err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	add(t.access.read, origin)
	if n.upper != "" {
		// Copied up while the content was fetched: serve the new content.
		f.Close()
		if f, err = openFile(n.upper, os.O_RDONLY); err != nil {
			return nil, 0, errno(err)
		}
	}
	// Inputs never change behind the kernel's back: keep their pages.
	return t.newHandleLocked(n, f, false), fuse.FOPEN_KEEP_CACHE, 0
}

// copyUp gives n a file in the tree's layer, with the input's content when
// keep is set (empty otherwise), unless it has one already.
func (n *node) copyUp(ctx context.Context, keep bool) syscall.Errno {
	t := n.t
	t.mu.Lock()
	if n.upper != "" {
		t.mu.Unlock()
		return 0
	}
	if n.passInput > 0 {
		// The kernel reads this input straight from the cache's file
		// (passthrough) for descriptors still open, and one file of the
		// kernel's has one backing file: the new content could not show
		// through them. Refused as writing a running program is.
		t.mu.Unlock()
		return syscall.ETXTBSY
	}
	d, exec, origin := n.d, n.exec, n.origin
	dst := t.upperFileLocked()
	t.mu.Unlock()

	out, err := openFile(dst, os.O_RDWR|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return errno(err)
	}
	if keep && d.Size > 0 {
		in, err := t.content(ctx, d, exec, origin)
		if err != nil {
			out.Close()
			os.Remove(dst)
			return errno(err)
		}
		// io.Copy between files uses copy_file_range: no bytes through
		// this process, and a reflink where the file system has them.
		_, err = io.Copy(out, in)
		in.Close()
		if err != nil {
			out.Close()
			os.Remove(dst)
			return errno(err)
		}
	}
	if err := out.Close(); err != nil {
		os.Remove(dst)
		return errno(err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if n.upper != "" || n.passInput > 0 {
		os.Remove(dst)
		if n.upper != "" {
			return 0
		}
		return syscall.ETXTBSY
	}
	n.upper, n.origin = dst, ""
	return 0
}

// handle is an open file: the input's file in the local cache, or the
// node's file in the layer.
type handle struct {
	n *node
	f *os.File
	// pass offers f to the kernel as the backing file (passthrough).
	pass bool
	// input says f is the cache's file of the input, counted in
	// n.passInput while open with passthrough.
	input bool
}

// Interfaces handle implements.
var (
	_ gofs.FileReader          = (*handle)(nil)
	_ gofs.FileWriter          = (*handle)(nil)
	_ gofs.FileReleaser        = (*handle)(nil)
	_ gofs.FileFlusher         = (*handle)(nil)
	_ gofs.FileFsyncer         = (*handle)(nil)
	_ gofs.FileAllocater       = (*handle)(nil)
	_ gofs.FilePassthroughFder = (*handle)(nil)
)

// newHandleLocked returns a handle of n on f. Caller holds t.mu.
func (t *Tree) newHandleLocked(n *node, f *os.File, writable bool) *handle {
	h := &handle{n: n, f: f, pass: t.pass}
	if h.pass && !writable && n.upper == "" {
		h.input = true
		n.passInput++
	}
	return h
}

// Read implements gofs.FileReader; go-fuse splices from the descriptor.
func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return fuse.ReadResultFd(h.f.Fd(), off, len(dest)), 0
}

// Write implements gofs.FileWriter.
func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	n, err := h.f.WriteAt(data, off)
	if err != nil {
		return uint32(n), errno(err)
	}
	return uint32(n), 0
}

// Flush implements gofs.FileFlusher.
func (h *handle) Flush(ctx context.Context) syscall.Errno { return 0 }

// Fsync implements gofs.FileFsyncer: the layer lives as long as the action,
// so there is nothing to make durable.
func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno { return 0 }

// Allocate implements gofs.FileAllocater.
func (h *handle) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	return errno(unix.Fallocate(int(h.f.Fd()), mode, int64(off), int64(size)))
}

// Release implements gofs.FileReleaser.
func (h *handle) Release(ctx context.Context) syscall.Errno {
	if h.input {
		t := h.n.t
		t.mu.Lock()
		h.n.passInput--
		t.mu.Unlock()
	}
	return errno(h.f.Close())
}

// PassthroughFd implements gofs.FilePassthroughFder.
func (h *handle) PassthroughFd() (int, bool) { return int(h.f.Fd()), h.pass }
