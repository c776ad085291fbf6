package remote

import (
	"bytes"
	"context"
	"fmt"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"golang.org/x/sync/errgroup"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
)

// PutBatch implements cas.BatchPutter: each blob is checked against its
// digest here, small ones travel in BatchUpdateBlobs requests packed under
// the batch limit (up to batchParallelism at once) and large ones in
// ByteStream writes (up to streamParallelism at once). A blob repeated in
// blobs is checked each time and sent once. The result has one error per blob, with Put's
// meaning.
func (c *Client) PutBatch(ctx context.Context, blobs []cas.Blob) []error {
	errs := make([]error, len(blobs))
	limit, err := c.maxBatchBlob(ctx)
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	first := make(map[digest.Digest]int, len(blobs)) // index of each digest's first good blob
	var small, large []int
	for i, b := range blobs {
		v := digest.NewVerifier(b.Digest)
		if _, err := v.Write(b.Data); err != nil {
			errs[i] = err
			continue
		}
		if errs[i] = v.Check(); errs[i] != nil {
			continue
		}
		if _, dup := first[b.Digest]; dup {
			continue
		}
		first[b.Digest] = i
		if b.Digest.IsEmpty() {
			continue
		}
		if b.Digest.Size > limit {
			large = append(large, i)
		} else {
			small = append(small, i)
		}
	}
	sizes := func(i int) int64 { return blobs[i].Digest.Size }
	var g errgroup.Group
	g.SetLimit(batchParallelism)
	for _, batch := range pack(small, sizes, limit) {
		g.Go(func() error {
			req := make([]blob, len(batch))
			for j, i := range batch {
				req[j] = blob{d: blobs[i].Digest, data: blobs[i].Data}
			}
			for j, err := range c.updateBlobs(ctx, req) {
				errs[batch[j]] = err
			}
			return nil
		})
	}
	var streams errgroup.Group
	streams.SetLimit(streamParallelism)
	for _, i := range large {
		streams.Go(func() error {
			errs[i] = c.write(ctx, blobs[i].Digest, bytes.NewReader(blobs[i].Data))
			return nil
		})
	}
	g.Wait()
	streams.Wait()
	for i, b := range blobs {
		if j, ok := first[b.Digest]; ok && errs[i] == nil {
			errs[i] = errs[j]
		}
	}
	return errs
}

// GetBatch reads many blobs at once and returns, for each digest of ds, its
// content or an error (wrapping cas.ErrNotFound for a missing blob). Small
// blobs travel in BatchReadBlobs requests packed under the batch limit,
// large ones are read whole through ByteStream, so callers keep ds to what
// they can hold in memory. Every content is verified against its digest.
// A digest repeated in ds is read once.
func (c *Client) GetBatch(ctx context.Context, ds []digest.Digest) ([][]byte, []error) {
	data := make([][]byte, len(ds))
	errs := make([]error, len(ds))
	limit, err := c.maxBatchBlob(ctx)
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
		return data, errs
	}
	first := make(map[digest.Digest]int, len(ds))
	var small, large []int
	for i, d := range ds {
		if _, dup := first[d]; dup {
			continue
		}
		first[d] = i
		switch {
		case d.IsEmpty():
			data[i] = []byte{}
		case d.Size > limit:
			large = append(large, i)
		default:
			small = append(small, i)
		}
	}
	sizes := func(i int) int64 { return ds[i].Size }
	var g errgroup.Group
	g.SetLimit(batchParallelism)
	for _, batch := range pack(small, sizes, limit) {
		g.Go(func() error {
			want := make([]digest.Digest, len(batch))
			for j, i := range batch {
				want[j] = ds[i]
			}
			got, gotErrs := c.readBlobs(ctx, want)
			for j, i := range batch {
				data[i], errs[i] = got[j], gotErrs[j]
			}
			return nil
		})
	}
	var streams errgroup.Group
	streams.SetLimit(streamParallelism)
	for _, i := range large {
		streams.Go(func() error {
			data[i], errs[i] = cas.ReadAll(ctx, c, ds[i])
			return nil
		})
	}
	g.Wait()
	streams.Wait()
	for i, d := range ds {
		data[i], errs[i] = data[first[d]], errs[first[d]]
	}
	return data, errs
}

// readBlobs reads ds, which fit in one request, with one BatchReadBlobs and
// verifies each content.
func (c *Client) readBlobs(ctx context.Context, ds []digest.Digest) ([][]byte, []error) {
	data := make([][]byte, len(ds))
	errs := make([]error, len(ds))
	req := &repb.BatchReadBlobsRequest{InstanceName: c.opts.Instance, Digests: make([]*repb.Digest, len(ds))}
	for i, d := range ds {
		req.Digests[i] = d.Proto()
	}
	resp, err := c.cas.BatchReadBlobs(ctx, req)
	if err != nil {
		err = c.rpcError(ctx, fmt.Sprintf("read of %d blobs", len(ds)), err)
		for i := range errs {
			errs[i] = err
		}
		return data, errs
	}
	type answer struct {
		data []byte
		err  error
	}
	answers := make(map[digest.Digest]answer, len(ds))
	for _, r := range resp.GetResponses() {
		d, err := digest.FromProto(r.GetDigest())
		if err != nil {
			continue // not one of ours; the blob it was for stays unanswered
		}
		if err := statusError(r.GetStatus()); err != nil {
			answers[d] = answer{err: c.readError(ctx, d, err)}
			continue
		}
		v := digest.NewVerifier(d)
		if _, err := v.Write(r.GetData()); err != nil {
			answers[d] = answer{err: fmt.Errorf("blob %v from %s: %w", d, c.target, err)}
			continue
		}
		if err := v.Check(); err != nil {
			answers[d] = answer{err: fmt.Errorf("blob %v from %s: %w", d, c.target, err)}
			continue
		}
		answers[d] = answer{data: r.GetData()}
	}
	for i, d := range ds {
		a, ok := answers[d]
		if !ok {
			a.err = fmt.Errorf("read %v on %s: %w", d, c.target, errNoAnswer)
		}
		data[i], errs[i] = a.data, a.err
	}
	return data, errs
}

// pack splits items into batches whose sizes add up to at most limit and
// whose messages stay under maxMessageBytes, keeping their order. Every
// item's size is at most limit.
func pack(items []int, size func(int) int64, limit int64) [][]int {
	var batches [][]int
	var cur []int
	var curSize, curBytes int64
	for _, i := range items {
		s := size(i)
		if len(cur) > 0 && (curSize+s > limit || curBytes+s+blobOverheadBytes > maxMessageBytes) {
			batches = append(batches, cur)
			cur, curSize, curBytes = nil, 0, 0
		}
		cur = append(cur, i)
		curSize += s
		curBytes += s + blobOverheadBytes
	}
	if len(cur) > 0 {
		batches = append(batches, cur)
	}
	return batches
}
