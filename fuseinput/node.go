package fuseinput

import (
	"encoding/binary"
	"hash/fnv"
	"io/fs"
	"os"
	"path"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/mound-build/mound/cas/digest"
)

// kind is what a node is.
type kind uint8

const (
	kindDir kind = iota
	kindFile
	kindSymlink
)

// Modes of entries as the tree has them: REAPI gives files an executable
// bit only, and directories no mode at all. These are the modes the
// hardlinked inputs have too, so an action sees the same either way.
const (
	dirMode  = 0o755
	fileMode = 0o444
	execMode = 0o555
)

// node is one entry of a tree: an input as the Directory messages describe
// it, or something the action made. Every field but Inode is guarded by
// the tree's mu.
type node struct {
	gofs.Inode
	t *Tree

	parent *node // nil for the root, and for an entry removed from the tree
	name   string
	kind   kind
	ino    uint64
	perm   uint32    // permission bits
	mtime  time.Time // zero: the tree's epoch

	// pathHash is the hash of the names on the way to the node when it
	// was created; children derive their inode numbers from it.
	pathHash uint64
	// origin is the path of the input this node still holds unchanged,
	// or "" for a node the action created or changed.
	origin string

	// A file's content: the input blob d (exec tells which variant of the
	// cache holds it) until the action changes it, then the file upper in
	// the tree's layer.
	d     digest.Digest
	exec  bool
	upper string
	// created says the action created the file (it has no input).
	created bool
	// passInput counts descriptors of the input's cache file offered to
	// the kernel for passthrough, from before the fetch to their release;
	// releasing those released whose go-fuse bookkeeping has not ended
	// yet; copying says a copy-up is under way. See copyUp.
	passInput, releasing int
	copying              bool
	// open counts the node's open handles: a removed file's layer file
	// goes with its last one.
	open int

	target string // a symlink's

	// A directory's entries: read from the Directory message dir on
	// first use; loaded says they are in children.
	dir      digest.Digest
	loaded   bool
	children map[string]*node
}

// Interfaces node implements (see dir.go and file.go).
var (
	_ gofs.NodeLookuper   = (*node)(nil)
	_ gofs.NodeReaddirer  = (*node)(nil)
	_ gofs.NodeGetattrer  = (*node)(nil)
	_ gofs.NodeSetattrer  = (*node)(nil)
	_ gofs.NodeOpener     = (*node)(nil)
	_ gofs.NodeCreater    = (*node)(nil)
	_ gofs.NodeMkdirer    = (*node)(nil)
	_ gofs.NodeMknoder    = (*node)(nil)
	_ gofs.NodeSymlinker  = (*node)(nil)
	_ gofs.NodeReadlinker = (*node)(nil)
	_ gofs.NodeUnlinker   = (*node)(nil)
	_ gofs.NodeRmdirer    = (*node)(nil)
	_ gofs.NodeRenamer    = (*node)(nil)
	_ gofs.NodeLinker     = (*node)(nil)
	_ gofs.NodeStatfser   = (*node)(nil)
)

// relPath is the node's path relative to the root ("." for the root), or
// "" for a node no longer in the tree. Caller holds t.mu.
func (n *node) relPath() string {
	if n == n.t.root {
		return "."
	}
	var parts []string
	for m := n; m != n.t.root; m = m.parent {
		if m.parent == nil {
			return ""
		}
		parts = append(parts, m.name)
	}
	for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
		parts[i], parts[j] = parts[j], parts[i]
	}
	return path.Join(parts...)
}

// childPath is the path of name in n. Caller holds t.mu.
func (n *node) childPath(name string) string {
	p := n.relPath()
	if p == "" {
		return ""
	}
	return path.Join(p, name)
}

// stable is the node's identity for go-fuse.
func (n *node) stable() gofs.StableAttr {
	return gofs.StableAttr{Mode: n.typeBits(), Ino: n.ino}
}

func (n *node) typeBits() uint32 {
	switch n.kind {
	case kindDir:
		return syscall.S_IFDIR
	case kindSymlink:
		return syscall.S_IFLNK
	}
	return syscall.S_IFREG
}

// fill describes the node in out. Caller holds t.mu.
func (n *node) fill(out *fuse.Attr) syscall.Errno {
	out.Ino = n.ino
	out.Mode = n.typeBits() | n.perm
	out.Nlink = 1
	out.Owner = fuse.Owner{Uid: n.t.fs.opts.UID, Gid: n.t.fs.opts.GID}
	out.Blksize = 4096
	mtime := n.mtime
	if mtime.IsZero() {
		mtime = n.t.epoch
	}
	switch n.kind {
	case kindDir:
		out.Nlink = 2
		out.Size = 4096
	case kindSymlink:
		out.Size = uint64(len(n.target))
	case kindFile:
		if n.upper == "" {
			out.Size = uint64(n.d.Size)
			break
		}
		fi, err := os.Lstat(n.upper)
		if err != nil {
			return errno(err)
		}
		out.Size = uint64(fi.Size())
		mtime = fi.ModTime() // the layer file's: writes move it
	}
	if n.parent == nil && n != n.t.root {
		out.Nlink = 0 // removed, still open
	}
	out.Blocks = (out.Size + 511) / 512
	out.SetTimes(nil, &mtime, &mtime)
	return 0
}

// info describes the node as fs.FileInfo, for the View. Caller holds t.mu.
func (n *node) info() (fs.FileInfo, error) {
	var a fuse.Attr
	if e := n.fill(&a); e != 0 {
		return nil, e
	}
	mode := fs.FileMode(a.Mode & 0o7777)
	switch n.kind {
	case kindDir:
		mode |= fs.ModeDir
	case kindSymlink:
		mode |= fs.ModeSymlink
	}
	name := n.name
	if n == n.t.root {
		name = "."
	}
	return &fileInfo{name: name, size: int64(a.Size), mode: mode, mtime: time.Unix(int64(a.Mtime), int64(a.Mtimensec))}, nil
}

type fileInfo struct {
	name  string
	size  int64
	mode  fs.FileMode
	mtime time.Time
}

func (i *fileInfo) Name() string       { return i.name }
func (i *fileInfo) Size() int64        { return i.size }
func (i *fileInfo) Mode() fs.FileMode  { return i.mode }
func (i *fileInfo) ModTime() time.Time { return i.mtime }
func (i *fileInfo) IsDir() bool        { return i.mode.IsDir() }
func (i *fileInfo) Sys() any           { return nil }

// Inode numbers. An input keeps the same number in every tree that has it at
// the same path with the same content (a hash of the path and the digest),
// so tools that remember inode numbers across runs see the same files; two
// paths never share a number, even with the same content, because a write to
// one must not show through the other. Entries the action creates get
// numbers of their own.

// hashName extends a path hash by one name.
func hashName(parent uint64, name string) uint64 {
	h := fnv.New64a()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], parent)
	h.Write(b[:])
	h.Write([]byte(name))
	return h.Sum64()
}

// inputIno is the inode number of an input at pathHash with content key.
func inputIno(pathHash uint64, k kind, key string) uint64 {
	h := fnv.New64a()
	var b [9]byte
	binary.LittleEndian.PutUint64(b[:], pathHash)
	b[8] = byte(k)
	h.Write(b[:])
	h.Write([]byte(key))
	return h.Sum64()
}

// reserved inode numbers: 0 is invalid, 1 is the root, and go-fuse refuses
// ^0.
func reservedIno(ino uint64) bool { return ino <= 1 || ino == ^uint64(0) }
