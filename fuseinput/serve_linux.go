package fuseinput

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Serve starts serving the tree on dev, a /dev/fuse descriptor whose mount
// waits for its INIT answer: it is sandbox.Spec.FUSE. The mount must have
// default_permissions (the sandbox's has): the kernel checks the modes and
// owners the tree reports, and the tree checks none itself. It answers INIT,
// starts the server on its own goroutine and returns; the server ends when
// the mount goes (Close waits for that). dev stays the caller's: the server
// works on a duplicate. Serve may be called once.
func (t *Tree) Serve(dev *os.File) error {
	if t.served != nil {
		return errors.New("fuseinput: Serve called twice")
	}
	fd, err := unix.FcntlInt(dev.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("fuseinput: dup /dev/fuse: %w", err)
	}
	timeout := cacheTimeout
	opts := &gofs.Options{
		MountOptions:    mountOptions(),
		EntryTimeout:    &timeout,
		AttrTimeout:     &timeout,
		NegativeTimeout: &timeout,
		RootStableAttr:  &gofs.StableAttr{Ino: 1},
		// A mode of 000 is the action's to set (chmod 000), not one for
		// go-fuse to replace with 0755 or 0644.
		NullPermissions: true,
		// Node ids are the inode numbers, which a tree never reuses:
		// releaseOrder finds nodes by them.
		ExternalNodeID: true,
		UID:            t.fs.opts.UID,
		GID:            t.fs.opts.GID,
	}
	// NewServer answers the kernel's INIT on the "/dev/fd/N" mount point
	// and takes fd (closing it when it fails or ends).
	server, err := fuse.NewServer(releaseOrder{RawFileSystem: gofs.NewNodeFS(t.root, opts), t: t}, fmt.Sprintf("/dev/fd/%d", fd), &opts.MountOptions)
	if err != nil {
		return fmt.Errorf("fuseinput: serve: %w", err)
	}
	pass := t.fs.opts.Passthrough && server.KernelSettings().Flags64()&fuse.CAP_PASSTHROUGH != 0 && t.probePassthrough(server) == nil
	t.mu.Lock()
	t.pass = pass
	t.mu.Unlock()
	t.served = make(chan struct{})
	go func() {
		defer close(t.served)
		server.Serve()
	}()
	return nil
}

// probePassthrough registers a file of the layer as a backing file and
// drops it again: the kernel offering passthrough is not enough, it also
// takes CAP_SYS_ADMIN, and go-fuse gives up on passthrough for the whole
// mount at the first refusal without saying so.
func (t *Tree) probePassthrough(server *fuse.Server) error {
	p := filepath.Join(t.opts.Upper, "passthrough-probe")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(p)
	defer f.Close()
	id, e := server.RegisterBackingFd(&fuse.BackingMap{Fd: int32(f.Fd())})
	if e != 0 {
		return e
	}
	if e := server.UnregisterBackingFd(id); e != 0 {
		return e
	}
	return nil
}

// Passthrough says whether the kernel reads and writes this tree's files
// directly (FUSE passthrough); known once Serve returned.
func (t *Tree) Passthrough() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pass
}
