package sandbox

import (
	"fmt"
	"os"
	"path"

	"golang.org/x/sys/unix"
)

// devNodes are the host device nodes bound into the sandbox's /dev.
var devNodes = []string{"null", "zero", "full", "random", "urandom"}

// devLinks are the sandbox's /dev symlinks, name and target.
var devLinks = [][2]string{
	{"fd", "/proc/self/fd"},
	{"stdin", "/proc/self/fd/0"},
	{"stdout", "/proc/self/fd/1"},
	{"stderr", "/proc/self/fd/2"},
}

// procReadOnly are the parts of /proc that could change kernel state; they
// are bound read-only over themselves (as bubblewrap does). The command has
// no capabilities, so this is defence in depth.
var procReadOnly = []string{"sys", "sysrq-trigger", "irq", "bus"}

// newRoot is where the init assembles the sandbox's root, on a tmpfs mounted
// over this directory of its private copy of the host's mount tree. /tmp
// exists everywhere; what the tmpfs hides there is reached by file
// descriptor (the exec root) or not needed.
const newRoot = "/tmp"

// buildRoot builds the sandbox's root filesystem and makes it the init's
// root. The mount namespace belongs to the init alone (it came from clone),
// so the changes reach no other process.
func buildRoot(cfg *initConfig) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return setupErr("make mounts private: %w", err)
	}
	// The exec root may lie under newRoot: hold it open before the tmpfs
	// hides it, and bind it through /proc/self/fd. Opened while the init
	// still accesses files as the host's root, so the exec root's
	// ancestors need not be searchable by the sandbox's user. A FUSE exec
	// root comes from /dev/fuse instead (fuse_linux.go), opened while the
	// host's /dev is still in view.
	execFD, fuseFD := -1, -1
	var err error
	if cfg.FUSE {
		fuseFD, err = openFUSEDevice()
		if err != nil {
			return err
		}
		defer func() {
			if fuseFD >= 0 {
				unix.Close(fuseFD)
			}
		}()
	} else {
		execFD, err = unix.Open(cfg.ExecRoot, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return setupErr("open exec root %s: %w", cfg.ExecRoot, err)
		}
		defer unix.Close(execFD)
	}
	if err := useInsideFSIDs(); err != nil {
		return err
	}
	if err := mountTmpfs(newRoot, "mode=0755,size=1m", unix.MS_NOSUID|unix.MS_NODEV); err != nil {
		return err
	}
	for _, d := range systemDirs {
		if err := addSystemDir(d); err != nil {
			return err
		}
	}

	mp := newRoot + cfg.MountPath
	if err := os.MkdirAll(mp, 0o755); err != nil {
		return setupErr("%w", err)
	}
	if cfg.FUSE {
		// The worker answers the mount's INIT while the init goes on
		// with /tmp, /proc and /dev, which do not touch the mount.
		if err := mountFUSE(fuseFD, mp); err != nil {
			return err
		}
		if err := sendFUSEDevice(fuseFD); err != nil {
			return err
		}
		unix.Close(fuseFD)
		fuseFD = -1
	} else if err := bindMount(fmt.Sprintf("/proc/self/fd/%d", execFD), mp, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV); err != nil {
		return err
	}

	if err := mountTmpfs(newRoot+"/tmp", "mode=1777", unix.MS_NOSUID|unix.MS_NODEV); err != nil {
		return err
	}
	if err := mountProc(newRoot + "/proc"); err != nil {
		return err
	}
	if err := mountDev(newRoot + "/dev"); err != nil {
		return err
	}
	// Nothing may be created beside the mount points.
	if err := setAttr(newRoot, false, unix.MOUNT_ATTR_RDONLY); err != nil {
		return err
	}
	if cfg.FUSE {
		if err := awaitFUSEServed(); err != nil {
			return err
		}
	}
	return pivot(newRoot)
}

// useInsideFSIDs makes this thread use InsideUID and InsideGID for file
// access from now on. Creating an inode (the mount points on the new root's
// tmpfs) needs an owner that exists in the user namespace, and those are the
// only ids in it; the init's own uid is the host's root, unmapped. From here
// on the init also sees the exec root with the command's permissions. The
// ids are per thread: all setup runs on the init's locked thread.
func useInsideFSIDs() error {
	unix.SetfsgidRetGid(InsideGID)
	unix.SetfsuidRetUid(InsideUID)
	// setfs[ug]id report the previous id, not failure: read them back.
	gid, _ := unix.SetfsgidRetGid(-1)
	uid, _ := unix.SetfsuidRetUid(-1)
	if uid != InsideUID || gid != InsideGID {
		return setupErr("setfsuid/setfsgid to %d/%d failed (have %d/%d)", InsideUID, InsideGID, uid, gid)
	}
	return nil
}

// addSystemDir makes the host's directory d visible, read-only, at the same
// place in the new root, or recreates it if it is a symlink.
func addSystemDir(d string) error {
	fi, err := os.Lstat(d)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return setupErr("%w", err)
	}
	dst := newRoot + d
	if fi.Mode()&os.ModeSymlink != 0 {
		target, err := os.Readlink(d)
		if err != nil {
			return setupErr("%w", err)
		}
		if err := os.Symlink(target, dst); err != nil {
			return setupErr("%w", err)
		}
		return nil
	}
	if !fi.IsDir() {
		return nil
	}
	if err := os.Mkdir(dst, 0o755); err != nil {
		return setupErr("%w", err)
	}
	return bindMount(d, dst, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV)
}

// bindMount binds src and everything mounted below it at dst, then sets attr
// on all those mounts. The submounts must come along: in a user namespace
// the kernel refuses to separate a host mount from the mounts on top of it.
func bindMount(src, dst string, attr uint64) error {
	if err := unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return setupErr("bind %s at %s: %w", src, dst, err)
	}
	if attr == 0 {
		return nil
	}
	return setAttr(dst, true, attr)
}

// setAttr adds the mount attributes attr (MOUNT_ATTR_RDONLY, ...) to the
// mount at p, and to every mount below it if recursive. Adding restrictions
// is allowed even on mounts the user namespace may not otherwise change, and
// flags such as nodev and noexec that the host mount has are kept.
func setAttr(p string, recursive bool, attr uint64) error {
	var flags uint
	if recursive {
		flags = unix.AT_RECURSIVE
	}
	if err := unix.MountSetattr(unix.AT_FDCWD, p, flags, &unix.MountAttr{Attr_set: attr}); err != nil {
		return setupErr("set mount attributes %#x on %s: %w", attr, p, err)
	}
	return nil
}

func mountTmpfs(dst, options string, flags uintptr) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return setupErr("%w", err)
	}
	if err := unix.Mount("tmpfs", dst, "tmpfs", flags, options); err != nil {
		return setupErr("mount tmpfs at %s: %w", dst, err)
	}
	return nil
}

// mountProc mounts a proc filesystem of the init's new pid namespace, so the
// command sees only the sandbox's processes.
func mountProc(dst string) error {
	if err := os.Mkdir(dst, 0o755); err != nil {
		return setupErr("%w", err)
	}
	if err := unix.Mount("proc", dst, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return setupErr("mount proc at %s: %w", dst, err)
	}
	for _, name := range procReadOnly {
		p := path.Join(dst, name)
		if _, err := os.Lstat(p); os.IsNotExist(err) {
			continue
		}
		if err := bindMount(p, p, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC); err != nil {
			return err
		}
	}
	return nil
}

// mountDev builds a minimal /dev: a few host device nodes bound onto empty
// files, the /proc/self/fd symlinks, and a private /dev/shm. The tmpfs
// itself ends up read-only.
func mountDev(dev string) error {
	if err := mountTmpfs(dev, "mode=0755,size=64k", unix.MS_NOSUID|unix.MS_NOEXEC); err != nil {
		return err
	}
	for _, name := range devNodes {
		src, dst := "/dev/"+name, path.Join(dev, name)
		fi, err := os.Stat(src)
		if err != nil {
			return setupErr("%w", err)
		}
		if fi.Mode()&os.ModeCharDevice == 0 {
			return setupErr("host %s is not a character device", src)
		}
		f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o666)
		if err != nil {
			return setupErr("%w", err)
		}
		f.Close()
		if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
			return setupErr("bind %s at %s: %w", src, dst, err)
		}
	}
	for _, l := range devLinks {
		if err := os.Symlink(l[1], path.Join(dev, l[0])); err != nil {
			return setupErr("%w", err)
		}
	}
	if err := mountTmpfs(path.Join(dev, "shm"), "mode=1777", unix.MS_NOSUID|unix.MS_NODEV); err != nil {
		return err
	}
	return setAttr(dev, false, unix.MOUNT_ATTR_RDONLY)
}

// pivot makes root the root directory and drops the host's tree: after
// pivot_root(".", "."), the old root is mounted over the new one and a lazy
// unmount of "." takes it away (see pivot_root(2)).
func pivot(root string) error {
	if err := unix.Chdir(root); err != nil {
		return setupErr("chdir %s: %w", root, err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return setupErr("pivot_root %s: %w", root, err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return setupErr("detach the host's root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return setupErr("chdir /: %w", err)
	}
	return nil
}
