// Package sandbox runs one action's command in fresh Linux namespaces, as an
// unprivileged user, with a root filesystem that shows only the host's system
// directories (read-only), the action's exec root, and private /tmp, /proc
// and /dev.
//
// How a run goes:
//
//  1. The worker (package workerd) prepares the exec root and calls Run
//     with a Spec. Run validates it and starts this same binary again
//     (/proc/self/exe) as the sandbox's init, in new user, mount, pid,
//     ipc, uts, cgroup and (unless Spec.Network) network namespaces. The
//     user namespace maps one id, InsideUID/InsideGID, to the host's
//     Spec.UID/Spec.GID; the init keeps only the few capabilities it needs
//     for setup, inside that namespace, as ambient capabilities.
//  2. The init (RunInitIfRequested, called first thing in main) reads the
//     Spec from a pipe, builds a new root on a tmpfs (mounts_linux.go),
//     pivots into it, sets the hostname, brings up loopback (net_linux.go),
//     applies resource limits, and starts the command as a child running as
//     InsideUID with no capabilities and no_new_privs (init_linux.go).
//  3. The init stays pid 1 of the sandbox: it reaps orphans, and when the
//     command exits it writes the exit status and resource usage to a
//     report pipe and exits. The kernel then kills whatever the command left
//     running in the pid namespace before Run's wait returns.
//  4. If the init cannot set the sandbox up, it writes the reason to the same
//     report pipe, so Run tells a setup failure (an error) from the
//     command's own exit status (a Result), whatever that status is.
//
// The exec root is either a host directory (Spec.ExecRoot), bound at
// Spec.MountPath, or a FUSE file system the worker serves (Spec.FUSE). The
// latter is mounted by the init itself, inside the sandbox's user and mount
// namespaces: the init mounts /dev/fuse and passes the descriptor back to
// Run over a socket, Run has Spec.FUSE serve it, and the init waits for
// Run's go-ahead before it pivots into the new root (fuse_linux.go). The
// mount is never visible on the host and dies with the sandbox.
//
// A timeout or a cancelled context kills the init with SIGKILL, which ends
// the whole pid namespace; the command's output written so far stays in the
// caller's Stdout and Stderr files. If the worker itself dies, the kernel
// kills each init (parent-death signal), and with it the sandbox.
package sandbox
