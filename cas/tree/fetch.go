package tree

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
)

// Limits on the trees Fetch accepts: far beyond real source trees and
// input roots, and small enough that a hostile tree (a small DAG that
// expands to billions of paths, or a chain deeper than any path can be) is
// refused before anything is written.
const (
	// MaxDepth is the deepest nesting of directories below the root.
	MaxDepth = 1000
	// MaxEntries is the most files, directories and symlinks, counted per
	// path (a directory referenced twice counts twice).
	MaxEntries = 10_000_000
)

// ErrInvalid is wrapped by every error Fetch returns for a tree that is
// malformed or that Create could not lay out safely.
var ErrInvalid = errors.New("invalid tree")

// Tree is a REAPI directory tree read from a CAS and checked: every name is
// a single path component, unique within its directory, every digest is
// valid, and the tree is within MaxDepth and MaxEntries.
type Tree struct {
	// Root is the digest of the top Directory message.
	Root digest.Digest
	// Files, Dirs (with the root) and Symlinks count entries per path;
	// Bytes is the size of all files.
	Files, Dirs, Symlinks int64
	Bytes                 int64
	// FetchBytes is the size of the distinct file contents: what Write
	// reads from the CAS.
	FetchBytes int64

	dirs map[digest.Digest]*repb.Directory
}

// Fetch reads the tree whose root Directory is root from g, level by level
// (many Directory messages at once, through GetBatch when g has it), and
// checks it (see Tree) before anything is written. A missing Directory is
// an error wrapping cas.ErrNotFound (and the store's cas.MissingError); a
// malformed or hostile one wraps ErrInvalid. Errors name the directory by
// its path in the tree. A chain deeper than MaxDepth is refused as soon as
// its level MaxDepth+1 is reached, before more of it is read.
func Fetch(ctx context.Context, g cas.BlobGetter, root digest.Digest) (*Tree, error) {
	t := &Tree{Root: root, dirs: map[digest.Digest]*repb.Directory{}}
	where := map[digest.Digest]string{root: "."} // first path of each directory
	for depth, level := 0, []digest.Digest{root}; len(level) > 0; depth++ {
		if depth > MaxDepth {
			return nil, fmt.Errorf("tree %v: %w: directories nest deeper than %d", root, ErrInvalid, MaxDepth)
		}
		msgs := make([][]byte, len(level))
		name := func(d digest.Digest) string { return describe(root, d, where[d]) }
		err := eachBlob(ctx, g, level, name, func(i int, b []byte) error {
			msgs[i] = b
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("tree %v: %w", root, err)
		}
		var next []digest.Digest
		for i, d := range level {
			dir := &repb.Directory{}
			if err := proto.Unmarshal(msgs[i], dir); err != nil {
				return nil, fmt.Errorf("tree %v: %s: %w: not a Directory message: %v", root, describe(root, d, where[d]), ErrInvalid, err)
			}
			if err := CheckDirectory(dir); err != nil {
				return nil, fmt.Errorf("tree %v: %s: %w", root, describe(root, d, where[d]), err)
			}
			t.dirs[d] = dir
			for _, sub := range dir.GetDirectories() {
				sd, _ := digest.FromProto(sub.GetDigest()) // checked
				if _, seen := where[sd]; !seen {
					where[sd] = path.Join(where[d], sub.GetName())
					next = append(next, sd)
				}
			}
		}
		level = next
	}
	if err := t.measure(); err != nil {
		return nil, fmt.Errorf("tree %v: %w", root, err)
	}
	return t, nil
}

// describe names the directory d, found at path in the tree root, for
// errors.
func describe(root, d digest.Digest, path string) string {
	if d == root {
		return "root directory"
	}
	return fmt.Sprintf("directory %q (%v)", path, d)
}

// CheckDirectory refuses a Directory message that could make a consumer
// leave its target or overwrite its own entries: names that are not single
// path components, a name used twice, invalid digests, empty symlink
// targets. Errors wrap ErrInvalid. Fetch checks every message with it;
// lazy readers of trees (package fuseinput) call it on each one they read.
func CheckDirectory(dir *repb.Directory) error {
	names := make(map[string]string, len(dir.GetFiles())+len(dir.GetDirectories())+len(dir.GetSymlinks()))
	name := func(kind, n string) error {
		if err := checkName(n); err != nil {
			return fmt.Errorf("%w: %s name %q %v", ErrInvalid, kind, n, err)
		}
		if other, dup := names[n]; dup {
			return fmt.Errorf("%w: name %q is both a %s and a %s", ErrInvalid, n, other, kind)
		}
		names[n] = kind
		return nil
	}
	for _, f := range dir.GetFiles() {
		if err := name("file", f.GetName()); err != nil {
			return err
		}
		if _, err := digest.FromProto(f.GetDigest()); err != nil {
			return fmt.Errorf("%w: file %q: %w", ErrInvalid, f.GetName(), err)
		}
	}
	for _, sub := range dir.GetDirectories() {
		if err := name("directory", sub.GetName()); err != nil {
			return err
		}
		if _, err := digest.FromProto(sub.GetDigest()); err != nil {
			return fmt.Errorf("%w: directory %q: %w", ErrInvalid, sub.GetName(), err)
		}
	}
	for _, l := range dir.GetSymlinks() {
		if err := name("symlink", l.GetName()); err != nil {
			return err
		}
		if l.GetTarget() == "" || strings.ContainsRune(l.GetTarget(), 0) {
			return fmt.Errorf("%w: symlink %q: target %q is empty or holds a NUL byte", ErrInvalid, l.GetName(), l.GetTarget())
		}
	}
	return nil
}

// checkName accepts a single path component that names a new entry.
func checkName(n string) error {
	switch {
	case n == "":
		return errors.New("is empty")
	case n == "." || n == "..":
		return errors.New("names a directory itself or its parent")
	case strings.ContainsRune(n, '/'):
		return errors.New("contains a slash")
	case strings.ContainsRune(n, 0):
		return errors.New("contains a NUL byte")
	}
	return nil
}

// dirSize is what a directory expands to.
type dirSize struct {
	files, dirs, links, bytes int64
	height                    int // levels of directories below it
}

// measure counts t's entries per path and refuses trees beyond MaxDepth
// and MaxEntries. Content addressing makes a cycle impossible in practice,
// but a forged one is refused too. The recursion stops at MaxDepth, however
// long the chains of distinct directories.
func (t *Tree) measure() error {
	memo := map[digest.Digest]*dirSize{}
	var visit func(d digest.Digest, depth int) (*dirSize, error)
	visit = func(d digest.Digest, depth int) (*dirSize, error) {
		if depth > MaxDepth {
			return nil, fmt.Errorf("%w: directories nest deeper than %d", ErrInvalid, MaxDepth)
		}
		if s, ok := memo[d]; ok {
			if s == nil {
				return nil, fmt.Errorf("%w: directory %v contains itself", ErrInvalid, d)
			}
			return s, nil
		}
		memo[d] = nil // in progress
		dir := t.dirs[d]
		s := &dirSize{dirs: 1, files: int64(len(dir.GetFiles())), links: int64(len(dir.GetSymlinks()))}
		for _, f := range dir.GetFiles() {
			s.bytes = addCapped(s.bytes, f.GetDigest().GetSizeBytes())
		}
		for _, sub := range dir.GetDirectories() {
			sd, _ := digest.FromProto(sub.GetDigest())
			c, err := visit(sd, depth+1)
			if err != nil {
				return nil, err
			}
			s.files = addCapped(s.files, c.files)
			s.dirs = addCapped(s.dirs, c.dirs)
			s.links = addCapped(s.links, c.links)
			s.bytes = addCapped(s.bytes, c.bytes)
			s.height = max(s.height, c.height+1)
		}
		if depth+s.height > MaxDepth {
			return nil, fmt.Errorf("%w: directories nest deeper than %d", ErrInvalid, MaxDepth)
		}
		if n := addCapped(addCapped(s.files, s.dirs), s.links); n > MaxEntries {
			return nil, fmt.Errorf("%w: more than %d entries", ErrInvalid, MaxEntries)
		}
		if s.bytes == math.MaxInt64 {
			return nil, fmt.Errorf("%w: file sizes add up beyond 2^63 bytes", ErrInvalid)
		}
		memo[d] = s
		return s, nil
	}
	s, err := visit(t.Root, 0)
	if err != nil {
		return err
	}
	t.Files, t.Dirs, t.Symlinks, t.Bytes = s.files, s.dirs, s.links, s.bytes
	seen := map[digest.Digest]bool{}
	for _, dir := range t.dirs {
		for _, f := range dir.GetFiles() {
			fd, _ := digest.FromProto(f.GetDigest())
			if !seen[fd] {
				seen[fd] = true
				t.FetchBytes = addCapped(t.FetchBytes, fd.Size)
			}
		}
	}
	return nil
}

// addCapped adds non-negative numbers, stopping at math.MaxInt64.
func addCapped(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// eachBlob reads the blobs ds into memory and calls fn with each one's
// index and content; fn runs concurrently for different blobs. When g has
// GetBatch it reads groups of at most groupBytes, transferParallelism
// groups at once; otherwise one Get per distinct blob, getParallelism at
// once. The first error stops the reading and is returned, prefixed with
// what name says the blob is.
func eachBlob(ctx context.Context, g cas.BlobGetter, ds []digest.Digest, name func(digest.Digest) string, fn func(i int, data []byte) error) error {
	idx := make(map[digest.Digest][]int, len(ds))
	var distinct []digest.Digest
	for i, d := range ds {
		if len(idx[d]) == 0 {
			distinct = append(distinct, d)
		}
		idx[d] = append(idx[d], i)
	}
	deliver := func(d digest.Digest, data []byte, err error) error {
		if err != nil {
			return fmt.Errorf("%s: %w", name(d), err)
		}
		if int64(len(data)) != d.Size {
			return fmt.Errorf("%s: blob %v: got %d bytes: %w", name(d), d, len(data), digest.ErrMismatch)
		}
		for _, i := range idx[d] {
			if err := fn(i, data); err != nil {
				return err
			}
		}
		return nil
	}
	eg, ctx := errgroup.WithContext(ctx)
	bg, batched := g.(cas.BatchGetter)
	if !batched {
		eg.SetLimit(getParallelism)
		for _, d := range distinct {
			eg.Go(func() error {
				data, err := cas.ReadAll(ctx, g, d)
				return deliver(d, data, err)
			})
		}
		return eg.Wait()
	}
	eg.SetLimit(transferParallelism)
	for _, group := range groups(distinct) {
		eg.Go(func() error {
			data, errs := bg.GetBatch(ctx, group)
			for j, d := range group {
				if err := deliver(d, data[j], errs[j]); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return eg.Wait()
}
