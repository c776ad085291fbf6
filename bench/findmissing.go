package bench

import (
	"context"
	"fmt"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/mound-build/mound/cas/digest"
)

// findMissingBlobMax bounds the sizes of the present half of the
// FindMissingBlobs digests: the workload is about lookups, so their
// content is kept small to upload quickly.
const findMissingBlobMax = 256

// setupConcurrency is how many requests are in flight while uploading what
// a workload needs before it is timed: enough to keep two cores busy.
const setupConcurrency = 4

// findMissingSet is the FindMissingBlobs request of one server: digests in
// random order, half of them uploaded.
type findMissingSet struct {
	req     *repb.FindMissingBlobsRequest
	missing map[digest.Digest]bool
}

// setupFindMissing uploads half of the digests the FindMissingBlobs
// workload asks for and makes one untimed call, which also opens the
// connection's streams and warms the server.
func (b *bench) setupFindMissing(ctx context.Context, s *server) error {
	n := b.opts.FindMissingDigests
	present := b.src.smallBlobs(n/2, 1, findMissingBlobMax)
	absent := b.src.hashes(n-n/2, findMissingBlobMax)
	set := &findMissingSet{
		req:     &repb.FindMissingBlobsRequest{InstanceName: s.instance},
		missing: make(map[digest.Digest]bool, len(absent)),
	}
	for _, d := range absent {
		set.missing[d] = true
		set.req.BlobDigests = append(set.req.BlobDigests, d.Proto())
	}
	for _, p := range present {
		set.req.BlobDigests = append(set.req.BlobDigests, p.d.Proto())
	}
	b.src.rng.Shuffle(n, func(i, j int) {
		set.req.BlobDigests[i], set.req.BlobDigests[j] = set.req.BlobDigests[j], set.req.BlobDigests[i]
	})
	batches := s.batches(present)
	if _, err := parallel(ctx, len(batches), setupConcurrency, func(ctx context.Context, _, i int) error {
		return s.update(ctx, batches[i])
	}); err != nil {
		return err
	}
	s.findMissing = set
	resp, err := s.cas.FindMissingBlobs(ctx, set.req)
	if err != nil {
		return fmt.Errorf("%s: FindMissingBlobs: %w", s.name, err)
	}
	return set.check(s, resp)
}

// findMissing times FindMissingBlobs calls at concurrency c.
func (b *bench) findMissing(ctx context.Context, s *server, c int) (Measure, error) {
	if s.findMissing == nil {
		if err := b.setupFindMissing(ctx, s); err != nil {
			return Measure{}, err
		}
	}
	set := s.findMissing
	// Each worker sends its own copy of the request: marshalling one
	// message from several goroutines at once is not documented as safe.
	reqs := make([]*repb.FindMissingBlobsRequest, c)
	for i := range reqs {
		reqs[i] = proto.Clone(set.req).(*repb.FindMissingBlobsRequest)
	}
	durs := make([]time.Duration, b.opts.FindMissingCalls)
	elapsed, err := parallel(ctx, len(durs), c, func(ctx context.Context, w, i int) error {
		start := time.Now()
		resp, err := s.cas.FindMissingBlobs(ctx, reqs[w])
		durs[i] = time.Since(start)
		if err != nil {
			return fmt.Errorf("%s: FindMissingBlobs: %w", s.name, err)
		}
		return set.check(s, resp)
	})
	if err != nil {
		return Measure{}, err
	}
	return latency(durs, elapsed), nil
}

// check reports whether resp names exactly the missing half, once each.
func (set *findMissingSet) check(s *server, resp *repb.FindMissingBlobsResponse) error {
	got := resp.GetMissingBlobDigests()
	if len(got) != len(set.missing) {
		return fmt.Errorf("%s: FindMissingBlobs: %w: %d of %d digests missing, want %d",
			s.name, ErrWrongAnswer, len(got), len(set.req.GetBlobDigests()), len(set.missing))
	}
	seen := make(map[digest.Digest]bool, len(got))
	for _, p := range got {
		d, err := digest.FromProto(p)
		if err != nil || !set.missing[d] || seen[d] {
			return fmt.Errorf("%s: FindMissingBlobs: %w: reported %v/%d missing, which is present, repeated or not asked for",
				s.name, ErrWrongAnswer, p.GetHash(), p.GetSizeBytes())
		}
		seen[d] = true
	}
	return nil
}
