// Package fuseinput presents an action's REAPI input tree as a FUSE file
// system (github.com/hanwen/go-fuse/v2, fs API) that fetches only what the
// action uses: a directory's Directory message when the action first looks
// inside it, a file's content when it first opens it.
//
// How data goes through it:
//
//   - One FS serves all the actions of a worker. It keeps recently read
//     Directory messages (size-bounded, one read in flight per digest) and
//     takes file contents from the worker's local blob cache
//     (workerd/blobcache), which fetches each blob once for all actions.
//   - FS.NewTree makes one action's Tree: its entries live in memory, built
//     from Directory messages as they are needed. The sandbox mounts it
//     inside the action's own user and mount namespaces and hands the
//     /dev/fuse descriptor to Tree.Serve (workerd/sandbox, Spec.FUSE); the
//     mount is never visible on the host and goes with the sandbox.
//   - Reads: opening an input opens its file in the blob cache (fetching it
//     first if needed). Where the kernel supports FUSE passthrough (Linux
//     6.9+, CAP_SYS_ADMIN), the kernel then reads that file itself, with the
//     page cache shared by every action; otherwise reads come through this
//     process, and the kernel keeps their pages for the action's lifetime.
//   - Writes go to files in the tree's layer (TreeOptions.Upper): creating a
//     file makes one; opening an input for writing or truncating it copies
//     it there first. Renames, removals, mkdir, symlink and chmod change the
//     in-memory entries only. Inputs themselves are never written. A
//     descriptor opened for reading before a copy-up goes on reading the
//     input's content, as on overlayfs before Linux 4.19.
//   - After the action the worker reads outputs from the Tree as an
//     outputs.View: from memory, the cache and the layer, not the mount.
//     Unchanged inputs declared as outputs keep their known digests.
//   - The Tree logs what the action did (Access): the inputs it read, the
//     lookups that failed, the directories it listed, what it wrote,
//     created, removed, renamed and chmodded, and the time its requests
//     waited for the CAS. A blob the CAS lacks is EIO for the action and an
//     error of Tree.Err for the worker, which fails the action with the
//     missing blob named.
//
// Attributes: every entry is owned by Options.UID/GID (the sandbox's own
// ids), and the kernel checks modes itself (default_permissions); files
// have mode 0444 or 0555 as the tree says, directories 0755;
// inputs show the time the tree was made as their mtime. Inode numbers of
// inputs derive from their path and digest, so they are the same in every
// action that has the same file at the same path. The kernel may keep
// entries, attributes and failed lookups for the action's whole run: only
// the action changes the tree, and only through the kernel.
//
// Deadlocks: the process serving FUSE must never touch its own mounts
// between fork and exec, nor let the Go poller register files of them
// (epoll_ctl of a FUSE file waits for the server). The worker never sees
// the mounts at all, and this package opens its own files without the
// poller (openFile).
package fuseinput
