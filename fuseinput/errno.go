package fuseinput

import (
	"errors"
	"os"
	"syscall"

	"github.com/mound-build/mound/cas"
)

// errno turns an error into what a FUSE request answers: the one place
// where errors become errnos. An input the CAS lacks, or a tree that is
// malformed, is EIO: the action cannot do anything about it, and Tree.Err
// tells the worker what went wrong. A cancelled request is EINTR.
func errno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var e syscall.Errno
	switch {
	case errors.Is(err, cas.ErrNotFound):
		return syscall.EIO
	case isCancel(err):
		return syscall.EINTR
	case errors.As(err, &e):
		return e
	case errors.Is(err, os.ErrNotExist):
		return syscall.ENOENT
	case errors.Is(err, os.ErrPermission):
		return syscall.EACCES
	}
	return syscall.EIO
}

// openFile opens a file of the cache or the layer without registering it
// with the Go runtime's poller: regular files gain nothing from it, and
// epoll_ctl takes a lock of the process's epoll instance that a request of
// this same process could be holding.
func openFile(name string, flag int) (*os.File, error) {
	fd, err := syscall.Open(name, flag|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), name), nil
}
