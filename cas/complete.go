package cas

import (
	"context"
	"errors"
	"fmt"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/mound-build/mound/cas/digest"
)

// CompleteActionCache is an ActionCache decorator that reports an entry as
// missing (ErrNotFound) unless every blob it references is in Blobs: output
// files, output directory Trees and every file inside them, stdout and
// stderr. Bazel trusts a cache hit and fails with "lost inputs" when a
// referenced blob is gone, so a partial hit must be a miss.
//
// Checking is done with FindMissing, which counts as an access, so a hit
// also refreshes every blob it references: eviction then keeps the outputs of
// recently used actions together with their AC entry.
type CompleteActionCache struct {
	ActionCache
	Blobs interface {
		BlobGetter
		MissingFinder
	}
}

// GetActionResult implements ActionCache.
func (c CompleteActionCache) GetActionResult(ctx context.Context, key ActionKey) (*repb.ActionResult, error) {
	r, err := c.ActionCache.GetActionResult(ctx, key)
	if err != nil {
		return nil, err
	}
	refs, err := ReferencedBlobs(ctx, c.Blobs, r)
	if errors.Is(err, ErrNotFound) || errors.Is(err, digest.ErrInvalid) {
		return nil, fmt.Errorf("action %v: %w: %w", key.Action, ErrNotFound, err)
	}
	if err != nil {
		return nil, err
	}
	missing, err := c.Blobs.FindMissing(ctx, refs)
	if err != nil {
		return nil, err
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("action %v: result references %d missing blobs (first %v): %w", key.Action, len(missing), missing[0], ErrNotFound)
	}
	return r, nil
}

// ReferencedBlobs lists the blobs an ActionResult needs: its output files,
// stdout and stderr, and each output directory's Tree blob with every file
// in it. Trees are read from g; a missing Tree is ErrNotFound.
func ReferencedBlobs(ctx context.Context, g BlobGetter, r *repb.ActionResult) ([]digest.Digest, error) {
	var refs []digest.Digest
	add := func(p *repb.Digest) error {
		if p == nil {
			return nil
		}
		d, err := digest.FromProto(p)
		if err != nil {
			return err
		}
		refs = append(refs, d)
		return nil
	}
	for _, f := range r.GetOutputFiles() {
		if err := add(f.GetDigest()); err != nil {
			return nil, fmt.Errorf("output file %q: %w", f.GetPath(), err)
		}
	}
	if err := add(r.GetStdoutDigest()); err != nil {
		return nil, fmt.Errorf("stdout: %w", err)
	}
	if err := add(r.GetStderrDigest()); err != nil {
		return nil, fmt.Errorf("stderr: %w", err)
	}
	for _, dir := range r.GetOutputDirectories() {
		td, err := digest.FromProto(dir.GetTreeDigest())
		if err != nil {
			return nil, fmt.Errorf("output directory %q: %w", dir.GetPath(), err)
		}
		refs = append(refs, td)
		b, err := ReadAll(ctx, g, td)
		if err != nil {
			return nil, fmt.Errorf("output directory %q tree: %w", dir.GetPath(), err)
		}
		tree := &repb.Tree{}
		if err := proto.Unmarshal(b, tree); err != nil {
			return nil, fmt.Errorf("output directory %q tree %v: %w: %v", dir.GetPath(), td, digest.ErrInvalid, err)
		}
		for _, d := range append([]*repb.Directory{tree.GetRoot()}, tree.GetChildren()...) {
			for _, f := range d.GetFiles() {
				if err := add(f.GetDigest()); err != nil {
					return nil, fmt.Errorf("output directory %q file %q: %w", dir.GetPath(), f.GetName(), err)
				}
			}
		}
	}
	return refs, nil
}
