package sandbox

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// A FUSE exec root (Spec.FUSE) is mounted by the init, inside the sandbox's
// namespaces, and served by the worker:
//
//  1. The init opens /dev/fuse while it still sees the host's /dev. The
//     kernel accepts a FUSE mount only from the user namespace that
//     opened the device, and the sandbox's is the one the init mounts in.
//  2. It mounts the device at MountPath on the new root (mountFUSE). The
//     kernel queues its INIT request on the device at once; nothing may
//     touch the mount until a server has answered it, or that access
//     would wait for the answer.
//  3. It hands the descriptor to the worker over a socket pair
//     (SCM_RIGHTS), closes its own, and goes on building the root: /tmp,
//     /proc and /dev do not touch the mount.
//  4. Meanwhile the worker's fuseHandshake receives the device, calls
//     Spec.FUSE, which answers INIT and starts serving, and writes one
//     byte back. The init waits for that byte before pivot_root; only
//     then does anything (the working directory check, the command) look
//     inside the mount.
//
// The mount exists in the sandbox's mount namespace alone. When the
// sandbox's last process exits, however it ends (even when the worker is
// killed, whose death kills the init), the namespace and the mount go with
// it, the kernel aborts the connection, and the server's reads fail with
// ENODEV. Nothing ever needs unmounting on the host.
//
// Serving FUSE in a process that forks is hazardous when the child, between
// fork and exec, touches the mount that its own parent serves: the parent
// waits for the exec (holding syscall.ForkLock, its forking thread stopped
// by vfork) and may not serve the request (see go-fuse's fs package
// documentation, "Deadlocks"). The worker forks each init while serving
// other sandboxes' exec roots, but no child can touch them: the mounts
// exist only inside those sandboxes' mount namespaces, which neither the
// worker nor a child cloned from it is in, so no file the worker holds, no
// path it passes (/proc/self/exe, no working directory) and no descriptor
// moved into place (pipes and sockets) is on a FUSE mount. The command,
// which does chdir into and exec from the mount between its fork and exec,
// is forked by the init, a different process from the server. And the
// device descriptors the worker holds are blocking, so the Go runtime never
// polls them.

// fuseSockFD is the init's end of the socket pair of the handshake, present
// only with Spec.FUSE (see reportFD and configFD).
const fuseSockFD = 5

// fuseGo is the byte the worker sends when the exec root is being served.
const fuseGo = 'g'

// fuseType is the file system type of the exec root mount, as the
// sandbox's /proc/self/mountinfo shows it.
const fuseType = "fuse.mound"

// errInitGone means the init ended during the handshake, before handing
// over /dev/fuse or before the go-ahead: its report says why.
var errInitGone = errors.New("the sandbox's init ended during the FUSE handshake")

// openFUSEDevice opens /dev/fuse, on the init's thread, for mountFUSE.
func openFUSEDevice() (int, error) {
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, setupErr("open /dev/fuse: %w", err)
	}
	return fd, nil
}

// mountFUSE mounts the FUSE device fd at dst. allow_other lets every
// process of the sandbox in: the command, but also the init (whose ids are
// not user_id's), while the kernel keeps processes outside the sandbox's
// user namespace out all the same. default_permissions makes the kernel
// check the modes and owners the server reports, as on any file system
// (directories' search and read bits included), instead of leaving every
// check to the server. The kernel takes fd, rootmode,
// user_id, group_id, default_permissions, allow_other, max_read (and
// blksize, for fuseblk) and refuses anything else with EINVAL; in a user
// namespace, user_id and group_id must be mapped in it (user_id=0 is
// EINVAL here) and the device must have been opened in it. max_read is
// left out: the server's max_pages in its INIT answer bounds reads.
func mountFUSE(fd int, dst string) error {
	opts := fmt.Sprintf("fd=%d,rootmode=%o,user_id=%d,group_id=%d,allow_other,default_permissions", fd, unix.S_IFDIR, InsideUID, InsideGID)
	if err := unix.Mount("mound", dst, fuseType, unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return setupErr("mount FUSE at %s (%s): %w", dst, opts, err)
	}
	return nil
}

// sendFUSEDevice hands the mounted device fd to the worker.
func sendFUSEDevice(fd int) error {
	if err := unix.Sendmsg(fuseSockFD, []byte{0}, unix.UnixRights(fd), nil, unix.MSG_NOSIGNAL); err != nil {
		return setupErr("send /dev/fuse to the worker: %w", err)
	}
	return nil
}

// awaitFUSEServed waits for the worker to say that it serves the mount.
func awaitFUSEServed() error {
	var b [1]byte
	for {
		n, err := unix.Read(fuseSockFD, b[:])
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return setupErr("wait for the FUSE server: %w", err)
		case n == 0 || b[0] != fuseGo:
			return setupErr("the worker did not start serving the exec root")
		}
		return nil
	}
}

// fuseSocketPair returns the two ends of the handshake's socket pair: the
// worker's and the init's.
func fuseSocketPair() (worker, init *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "fuse handshake"), os.NewFile(uintptr(fds[1]), "fuse handshake (init)"), nil
}

// fuseHandshake is the worker's side: one goroutine receives the device,
// calls serve and tells the init to go on. Its owner reads done exactly
// once and then calls close. Once the init has exited, done comes at once:
// the init's end of the socket is closed, and its mount is gone, which
// ends a serve function still answering INIT.
type fuseHandshake struct {
	sock *os.File
	// done receives nil once the init has been told to go on, errInitGone
	// if the init ended first, or why serving failed.
	done chan error
	// dev is the device received; written by the goroutine before done,
	// read by the owner after.
	dev *os.File
}

func startFUSEHandshake(sock *os.File, serve func(dev *os.File) error) *fuseHandshake {
	h := &fuseHandshake{sock: sock, done: make(chan error, 1)}
	go func() {
		dev, err := receiveFUSEDevice(sock)
		if err != nil {
			h.done <- err
			return
		}
		h.dev = dev
		if err := serve(dev); err != nil {
			h.done <- fmt.Errorf("serve the FUSE exec root: %w", err)
			return
		}
		if _, err := unix.SendmsgN(int(sock.Fd()), []byte{fuseGo}, nil, nil, unix.MSG_NOSIGNAL); err != nil {
			h.done <- errInitGone
			return
		}
		h.done <- nil
	}()
	return h
}

// close closes the device and the socket. The caller has read done.
func (h *fuseHandshake) close() {
	if h.dev != nil {
		h.dev.Close()
	}
	h.sock.Close()
}

// receiveFUSEDevice receives the init's /dev/fuse descriptor. It returns
// errInitGone when the init's end of the socket closes first.
func receiveFUSEDevice(sock *os.File) (*os.File, error) {
	defer runtime.KeepAlive(sock)
	var buf [1]byte
	oob := make([]byte, unix.CmsgSpace(4))
	for {
		n, oobn, flags, _, err := unix.Recvmsg(int(sock.Fd()), buf[:], oob, unix.MSG_CMSG_CLOEXEC)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("receive /dev/fuse: %w", err)
		}
		if n == 0 && oobn == 0 {
			return nil, errInitGone
		}
		var fds []int
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err == nil {
			for _, m := range msgs {
				if got, err := unix.ParseUnixRights(&m); err == nil {
					fds = append(fds, got...)
				}
			}
		}
		if len(fds) != 1 || flags&unix.MSG_CTRUNC != 0 {
			for _, fd := range fds {
				unix.Close(fd)
			}
			return nil, fmt.Errorf("receive /dev/fuse: a message with %d descriptors (flags %#x)", len(fds), flags)
		}
		return os.NewFile(uintptr(fds[0]), "/dev/fuse"), nil
	}
}
