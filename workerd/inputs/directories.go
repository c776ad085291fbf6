package inputs

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
)

// Limits on the input trees accepted: far beyond real input roots, small
// enough that a hostile tree (a small DAG that expands to billions of paths,
// or a chain deeper than any path can be) is refused before anything is
// written.
const (
	// maxDepth is the deepest nesting of directories.
	maxDepth = 1000
	// maxEntries is the most files, directories and symlinks, counted per
	// path (a directory referenced twice counts twice).
	maxEntries = 10_000_000
)

// Limits of reading Directory messages.
const (
	// dirGroupBytes is the content asked of one GetBatch call: the getter
	// spreads it over several requests itself; the bound keeps the memory
	// of a huge level in check.
	dirGroupBytes = 16 << 20
	// dirParallelism is how many Directory messages are read at once from
	// a getter without GetBatch: each is one round trip to a remote CAS,
	// so several hide each other's latency.
	dirParallelism = 16
)

// ErrInvalid is wrapped by every error for an input tree that is malformed
// or would write outside its directory.
var ErrInvalid = errors.New("invalid input tree")

// tree is an input root's Directory messages, checked.
type tree struct {
	root digest.Digest
	dirs map[digest.Digest]*repb.Directory
}

// readTree reads the tree whose root Directory is root from g, level by
// level, and checks it. A missing Directory wraps cas.ErrNotFound, a
// malformed one ErrInvalid; errors name the directory by its path.
func readTree(ctx context.Context, g cas.BlobGetter, root digest.Digest) (*tree, error) {
	t := &tree{root: root, dirs: map[digest.Digest]*repb.Directory{}}
	where := map[digest.Digest]string{root: "."} // first path of each directory
	name := func(d digest.Digest) string {
		if d == root {
			return fmt.Sprintf("root directory %v", d)
		}
		return fmt.Sprintf("directory %q (%v)", where[d], d)
	}
	for depth, level := 0, []digest.Digest{root}; len(level) > 0; depth++ {
		if depth > maxDepth {
			return nil, fmt.Errorf("%w: directories nest deeper than %d", ErrInvalid, maxDepth)
		}
		msgs, err := readBlobs(ctx, g, level, name)
		if err != nil {
			return nil, err
		}
		var next []digest.Digest
		for i, d := range level {
			dir := &repb.Directory{}
			if err := proto.Unmarshal(msgs[i], dir); err != nil {
				return nil, fmt.Errorf("%s: %w: not a Directory message: %v", name(d), ErrInvalid, err)
			}
			if err := checkDirectory(dir); err != nil {
				return nil, fmt.Errorf("%s: %w", name(d), err)
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
	if err := t.checkSize(); err != nil {
		return nil, err
	}
	return t, nil
}

// readBlobs reads the distinct blobs ds, through GetBatch when g has it.
func readBlobs(ctx context.Context, g cas.BlobGetter, ds []digest.Digest, name func(digest.Digest) string) ([][]byte, error) {
	data := make([][]byte, len(ds))
	check := func(i int, b []byte, err error) error {
		if err != nil {
			return fmt.Errorf("%s: %w", name(ds[i]), err)
		}
		if int64(len(b)) != ds[i].Size {
			return fmt.Errorf("%s: got %d bytes: %w", name(ds[i]), len(b), digest.ErrMismatch)
		}
		data[i] = b
		return nil
	}
	if bg, ok := g.(cas.BatchGetter); ok {
		for start := 0; start < len(ds); {
			end, bytes := start, int64(0)
			for end < len(ds) && (end == start || bytes+ds[end].Size <= dirGroupBytes) {
				bytes += ds[end].Size
				end++
			}
			got, errs := bg.GetBatch(ctx, ds[start:end])
			for j := range got {
				if err := check(start+j, got[j], errs[j]); err != nil {
					return nil, err
				}
			}
			start = end
		}
		return data, nil
	}
	eg, ctx := errgroup.WithContext(ctx)
	eg.SetLimit(dirParallelism)
	for i, d := range ds {
		eg.Go(func() error {
			b, err := cas.ReadAll(ctx, g, d)
			return check(i, b, err)
		})
	}
	if err := eg.Wait(); err != nil {
		return nil, err
	}
	return data, nil
}

// checkDirectory refuses what could make the tree leave its directory or
// overwrite its own entries.
func checkDirectory(dir *repb.Directory) error {
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

// expansion is what a directory expands to on disk.
type expansion struct {
	entries int64 // the directory and everything under it
	height  int   // levels of directories below it
}

// checkSize refuses trees deeper than maxDepth or with more than maxEntries
// entries once every path is expanded. Content addressing makes a cycle
// impossible in practice, but a forged one is refused too. The recursion
// stops at maxDepth, however long the chains of distinct directories.
func (t *tree) checkSize() error {
	memo := map[digest.Digest]*expansion{}
	var visit func(d digest.Digest, depth int) (*expansion, error)
	visit = func(d digest.Digest, depth int) (*expansion, error) {
		if depth > maxDepth {
			return nil, fmt.Errorf("%w: directories nest deeper than %d", ErrInvalid, maxDepth)
		}
		if e, ok := memo[d]; ok {
			if e == nil {
				return nil, fmt.Errorf("%w: directory %v contains itself", ErrInvalid, d)
			}
			return e, nil
		}
		memo[d] = nil // in progress
		dir := t.dirs[d]
		e := &expansion{entries: 1 + int64(len(dir.GetFiles())+len(dir.GetSymlinks()))}
		for _, sub := range dir.GetDirectories() {
			sd, _ := digest.FromProto(sub.GetDigest())
			c, err := visit(sd, depth+1)
			if err != nil {
				return nil, err
			}
			// Each term is at most maxEntries: the sum cannot overflow.
			e.entries += c.entries
			e.height = max(e.height, c.height+1)
		}
		if depth+e.height > maxDepth {
			return nil, fmt.Errorf("%w: directories nest deeper than %d", ErrInvalid, maxDepth)
		}
		if e.entries > maxEntries {
			return nil, fmt.Errorf("%w: more than %d entries", ErrInvalid, maxEntries)
		}
		memo[d] = e
		return e, nil
	}
	_, err := visit(t.root, 0)
	return err
}
