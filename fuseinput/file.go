package fuseinput

import (
	"context"
	"io"
	"os"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/mound-build/mound/cas/digest"
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
		p := n.relPath()
		t.mu.Unlock()
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
		if n.upper != "" {
			// The layer file's own time, which writes move on.
			if err := os.Chtimes(n.upper, time.Time{}, mtime); err != nil {
				return errno(err)
			}
		} else {
			n.mtime = mtime
		}
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
// copies the input into the tree's layer. Permissions are the kernel's to
// check (see Tree.Serve).
func (n *node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	t := n.t
	if n.kind != kindFile {
		return nil, 0, syscall.EISDIR
	}
	acc := flags & syscall.O_ACCMODE
	trunc := flags&syscall.O_TRUNC != 0
	write := acc != syscall.O_RDONLY || trunc
	if write {
		return n.openWrite(ctx, acc, trunc)
	}
	t.mu.Lock()
	for n.copying {
		t.cond.Wait()
	}
	if n.upper != "" {
		defer t.mu.Unlock()
		f, err := openFile(n.upper, os.O_RDONLY)
		if err != nil {
			return nil, 0, errno(err)
		}
		return t.newHandleLocked(n, f, false), 0, 0
	}
	// Reserved before the fetch, so that no copy-up starts before the
	// handle is counted (see copyUp).
	input := n.passthroughLocked()
	if input {
		n.passInput++
	}
	d, exec, origin := n.d, n.exec, n.origin
	add(t.access.read, origin)
	t.mu.Unlock()
	if !input {
		if data, ok, err := t.smallContent(t.bgCtx, d, exec, origin); err != nil {
			return nil, 0, errno(err)
		} else if ok {
			t.mu.Lock()
			defer t.mu.Unlock()
			h := t.newHandleLocked(n, nil, false)
			h.data = data
			return h, fuse.FOPEN_KEEP_CACHE, 0
		}
	}
	f, err := t.content(t.bgCtx, d, exec, origin)
	if err != nil {
		t.mu.Lock()
		if input {
			n.passInput--
			t.cond.Broadcast()
		}
		t.mu.Unlock()
		return nil, 0, errno(err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	// Inputs never change behind the kernel's back: keep their pages.
	return t.newHandleLocked(n, f, input), fuse.FOPEN_KEEP_CACHE, 0
}

// openWrite opens n for writing, in the layer.
func (n *node) openWrite(ctx context.Context, acc uint32, trunc bool) (gofs.FileHandle, uint32, syscall.Errno) {
	t := n.t
	t.mu.Lock()
	t.mu.Unlock()
	if e := n.copyUp(ctx, !trunc); e != 0 {
		return nil, 0, e
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	f, err := openFile(n.upper, os.O_RDWR)
	if err == nil && trunc {
		if err = f.Truncate(0); err != nil {
			f.Close()
		}
	}
	if err != nil {
		return nil, 0, errno(err)
	}
	add(t.access.written, n.relPath())
	return t.newHandleLocked(n, f, false), 0, 0
}

// releaseWait bounds how long a copy-up waits for the input's last
// passthrough descriptors to be released: the kernel sends RELEASE at
// close, without waiting for it, so a write right after a close can
// arrive first.
const releaseWait = 5 * time.Second

// copyUp gives n a file in the tree's layer, with the input's content when
// keep is set (empty otherwise), unless it has one already.
//
// With passthrough the kernel reads an open input straight from the
// cache's file, and go-fuse hands every descriptor of an inode the
// backing file of the first one still open: a descriptor opened for
// writing then would write into the cache. So an input is copied up only
// once none of its passthrough descriptors is left, go-fuse's count of
// them included (releaseOrder); while one stays open, opening the input
// for writing fails with ETXTBSY, as writing a running program does.
func (n *node) copyUp(ctx context.Context, keep bool) syscall.Errno {
	t := n.t
	t.mu.Lock()
	var deadline time.Time
	for {
		if n.upper != "" {
			t.mu.Unlock()
			return 0
		}
		if n.copying {
			t.cond.Wait() // another copy-up of n; no deadline
			continue
		}
		if n.passInput == 0 && n.releasing == 0 {
			break
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(releaseWait)
			timer := time.AfterFunc(releaseWait, func() {
				t.mu.Lock()
				t.cond.Broadcast()
				t.mu.Unlock()
			})
			defer timer.Stop()
		} else if time.Now().After(deadline) {
			t.mu.Unlock()
			return syscall.ETXTBSY
		}
		t.cond.Wait()
	}
	n.copying = true
	d, exec, origin := n.d, n.exec, n.origin
	mtime := n.mtime
	if mtime.IsZero() {
		mtime = t.epoch
	}
	if keep {
		add(t.access.read, origin) // the action goes on from its content
	}
	dst := t.upperFileLocked()
	t.mu.Unlock()

	err := copyInput(t.bgCtx, t, dst, keep && d.Size > 0, d, exec, origin)
	if err == nil {
		// Until written, the copy is as old as the input was.
		err = os.Chtimes(dst, time.Time{}, mtime)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	n.copying = false
	t.cond.Broadcast()
	if err != nil {
		os.Remove(dst)
		return errno(err)
	}
	n.upper, n.origin = dst, ""
	return 0
}

// copyInput creates dst with the input's content, or empty.
func copyInput(ctx context.Context, t *Tree, dst string, keep bool, d digest.Digest, exec bool, origin string) error {
	out, err := openFile(dst, os.O_RDWR|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return err
	}
	if keep {
		in, err := t.content(ctx, d, exec, origin)
		if err != nil {
			out.Close()
			return err
		}
		// io.Copy between files uses copy_file_range: no bytes through
		// this process, and a reflink where the file system has them.
		_, err = io.Copy(out, in)
		in.Close()
		if err != nil {
			out.Close()
			return err
		}
	}
	return out.Close()
}

// passthroughMin is the size from which an input is read with passthrough.
// A smaller file takes the kernel one or two read requests through this
// process, cheaper than setting up a backing file for it at every open
// (measured: gcc on 300 small headers ran 11% slower with passthrough for
// every file, and as fast as with hardlinked inputs without; a 256 MiB file
// reads 7x faster with it).
const passthroughMin = 256 << 10

// passthroughLocked says whether n's descriptors are offered to the kernel
// as backing files. It never changes for a node: one inode's descriptors
// must all be passthrough or none (the kernel refuses a mix), also across
// a copy-up. Caller holds t.mu.
func (n *node) passthroughLocked() bool {
	return n.t.pass && (n.created || n.d.Size >= passthroughMin)
}

// handle is an open file: the input's file in the local cache, the node's
// file in the layer, or (f nil) a small input's bytes just fetched.
type handle struct {
	n    *node
	f    *os.File
	data []byte
	// pass offers f to the kernel as the backing file (passthrough).
	pass bool
	// input says f is the cache's file of the input, counted in
	// n.passInput while open with passthrough.
	input bool
}

// releaseOrder wraps go-fuse's file system to learn when a release has
// ended, go-fuse's own count of the inode's passthrough descriptors
// included: only then may a copy-up give the inode another backing file.
// Node ids are inode numbers (gofs.Options.ExternalNodeID).
type releaseOrder struct {
	fuse.RawFileSystem
	t *Tree
}

// Release implements fuse.RawFileSystem.
func (r releaseOrder) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	r.RawFileSystem.Release(cancel, in)
	t := r.t
	t.mu.Lock()
	if n := t.inos[in.NodeId]; n != nil && n.releasing > 0 {
		n.releasing--
		t.cond.Broadcast()
	}
	t.mu.Unlock()
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

// newHandleLocked returns a handle of n on f; input says f is the input's
// cache file, counted in n.passInput already. Caller holds t.mu.
func (t *Tree) newHandleLocked(n *node, f *os.File, input bool) *handle {
	n.open++
	return &handle{n: n, f: f, pass: n.passthroughLocked(), input: input}
}

// Read implements gofs.FileReader; go-fuse splices from the descriptor.
func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if h.f == nil {
		if off >= int64(len(h.data)) {
			return fuse.ReadResultData(nil), 0
		}
		return fuse.ReadResultData(h.data[off:min(off+int64(len(dest)), int64(len(h.data)))]), 0
	}
	return fuse.ReadResultFd(h.f.Fd(), off, len(dest)), 0
}

// Write implements gofs.FileWriter.
func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if h.f == nil {
		return 0, syscall.EBADF // a read-only open
	}
	n, err := h.f.WriteAt(data, off)
	if err != nil {
		return uint32(n), errno(err)
	}
	return uint32(n), 0
}

// Flush implements gofs.FileFlusher. Writes reach the file when they are
// made, so a close has nothing to report; ENOSYS tells the kernel to stop
// sending FLUSH at every close, a round trip fewer per file.
func (h *handle) Flush(ctx context.Context) syscall.Errno { return syscall.ENOSYS }

// Fsync implements gofs.FileFsyncer: the layer lives as long as the action,
// so there is nothing to make durable. On ENOSYS the kernel stops asking
// and answers fsync(2) with success itself.
func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno { return syscall.ENOSYS }

// Allocate implements gofs.FileAllocater.
func (h *handle) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	if h.f == nil {
		return syscall.EBADF
	}
	return errno(unix.Fallocate(int(h.f.Fd()), mode, int64(off), int64(size)))
}

// Release implements gofs.FileReleaser.
func (h *handle) Release(ctx context.Context) syscall.Errno {
	t, n := h.n.t, h.n
	t.mu.Lock()
	if h.input {
		// Counted until go-fuse has dropped the backing file too
		// (releaseOrder).
		n.passInput--
		n.releasing++
	}
	n.open--
	t.dropLayerFileLocked(n)
	t.mu.Unlock()
	if h.f == nil {
		return 0
	}
	return errno(h.f.Close())
}

// PassthroughFd implements gofs.FilePassthroughFder.
func (h *handle) PassthroughFd() (int, bool) {
	if h.f == nil {
		return 0, false
	}
	return int(h.f.Fd()), h.pass
}
