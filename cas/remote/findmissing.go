package remote

import (
	"context"
	"fmt"
	"slices"
	"sync"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"golang.org/x/sync/errgroup"

	"github.com/mound-build/mound/cas/digest"
)

// FindMissing implements cas.MissingFinder with FindMissingBlobs requests of
// at most maxFindMissingDigests digests each. The empty blob and repeated
// digests are not sent. A server answer naming a digest that was not asked
// for is an error, since trusting it could skip an upload.
func (c *Client) FindMissing(ctx context.Context, ds []digest.Digest) ([]digest.Digest, error) {
	asked := make(map[digest.Digest]bool, len(ds))
	var ask []digest.Digest
	for _, d := range ds {
		if d.IsEmpty() || asked[d] {
			continue
		}
		asked[d] = true
		ask = append(ask, d)
	}
	var mu sync.Mutex
	missing := map[digest.Digest]bool{} // guarded by mu
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(findMissingParallelism)
	for chunk := range slices.Chunk(ask, maxFindMissingDigests) {
		g.Go(func() error {
			req := &repb.FindMissingBlobsRequest{InstanceName: c.opts.Instance, BlobDigests: make([]*repb.Digest, len(chunk))}
			for i, d := range chunk {
				req.BlobDigests[i] = d.Proto()
			}
			resp, err := c.cas.FindMissingBlobs(gctx, req)
			if err != nil {
				return c.rpcError(gctx, fmt.Sprintf("find missing blobs among %d", len(chunk)), err)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, p := range resp.GetMissingBlobDigests() {
				d, err := digest.FromProto(p)
				if err != nil {
					return fmt.Errorf("FindMissingBlobs answer from %s: %w", c.target, err)
				}
				if !asked[d] {
					return fmt.Errorf("FindMissingBlobs answer from %s names %v, which was not asked for", c.target, d)
				}
				missing[d] = true
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	out := make([]digest.Digest, 0, len(missing))
	for _, d := range ask {
		if missing[d] {
			out = append(out, d)
		}
	}
	return out, nil
}
