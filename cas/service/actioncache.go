package service

import (
	"context"
	"errors"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/cas/resource"
)

// ActionCache implements the REAPI ActionCache service.
type ActionCache struct {
	repb.UnimplementedActionCacheServer
	opts Options
}

// NewActionCache returns the ActionCache service.
func NewActionCache(opts Options) (*ActionCache, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()
	return &ActionCache{opts: opts}, nil
}

func actionKey(instance string, p *repb.Digest) (cas.ActionKey, error) {
	if err := resource.ValidateInstance(instance); err != nil {
		return cas.ActionKey{}, Status(err)
	}
	d, err := digest.FromProto(p)
	if err != nil {
		return cas.ActionKey{}, invalid("action_digest: %v", err)
	}
	return cas.ActionKey{Instance: instance, Action: d}, nil
}

// GetActionResult implements repb.ActionCacheServer. Small stdout, stderr
// and requested output files are inlined when asked, within MaxBatchBytes.
func (s *ActionCache) GetActionResult(ctx context.Context, req *repb.GetActionResultRequest) (*repb.ActionResult, error) {
	key, err := actionKey(req.GetInstanceName(), req.GetActionDigest())
	if err != nil {
		return nil, err
	}
	r, err := s.opts.Actions.GetActionResult(ctx, key)
	if errors.Is(err, cas.ErrNotFound) {
		s.opts.Metrics.ACMisses.Inc()
	}
	if err != nil {
		return nil, Status(err)
	}
	s.opts.Metrics.ACHits.Inc()
	budget := s.opts.MaxBatchBytes - int64(proto.Size(r))
	inline := func(p *repb.Digest) []byte {
		d, err := digest.FromProto(p)
		if err != nil || d.Size > budget {
			return nil
		}
		b, err := cas.ReadAll(ctx, s.opts.Blobs, d)
		if err != nil {
			return nil // the client falls back to reading the digest
		}
		budget -= d.Size
		return b
	}
	if req.GetInlineStdout() && len(r.StdoutRaw) == 0 && r.StdoutDigest != nil {
		r.StdoutRaw = inline(r.StdoutDigest)
	}
	if req.GetInlineStderr() && len(r.StderrRaw) == 0 && r.StderrDigest != nil {
		r.StderrRaw = inline(r.StderrDigest)
	}
	if want := req.GetInlineOutputFiles(); len(want) > 0 {
		paths := map[string]bool{}
		for _, p := range want {
			paths[p] = true
		}
		for _, f := range r.OutputFiles {
			if paths[f.GetPath()] && len(f.Contents) == 0 {
				f.Contents = inline(f.GetDigest())
			}
		}
	}
	return r, nil
}

// UpdateActionResult implements repb.ActionCacheServer. Inlined stdout,
// stderr and file contents are moved into the CAS, so the stored entry stays
// small and every reader finds its blobs by digest.
func (s *ActionCache) UpdateActionResult(ctx context.Context, req *repb.UpdateActionResultRequest) (*repb.ActionResult, error) {
	key, err := actionKey(req.GetInstanceName(), req.GetActionDigest())
	if err != nil {
		return nil, err
	}
	r := req.GetActionResult()
	if r == nil {
		return nil, invalid("action_result is missing")
	}
	r = proto.Clone(r).(*repb.ActionResult)
	var blobs []cas.Blob
	spill := func(raw []byte, p **repb.Digest) error {
		d := digest.OfBytes(raw)
		if *p != nil {
			if want, err := digest.FromProto(*p); err != nil || want != d {
				return invalid("inlined content does not match its digest %v", *p)
			}
		}
		*p = d.Proto()
		blobs = append(blobs, cas.Blob{Digest: d, Data: raw})
		return nil
	}
	if len(r.StdoutRaw) > 0 {
		if err := spill(r.StdoutRaw, &r.StdoutDigest); err != nil {
			return nil, err
		}
		r.StdoutRaw = nil
	}
	if len(r.StderrRaw) > 0 {
		if err := spill(r.StderrRaw, &r.StderrDigest); err != nil {
			return nil, err
		}
		r.StderrRaw = nil
	}
	for _, f := range r.OutputFiles {
		if len(f.Contents) > 0 {
			if err := spill(f.Contents, &f.Digest); err != nil {
				return nil, err
			}
			f.Contents = nil
		}
	}
	for _, err := range cas.PutBatch(ctx, s.opts.Blobs, blobs) {
		if err != nil {
			return nil, Status(err)
		}
	}
	if err := s.opts.Actions.UpdateActionResult(ctx, key, r); err != nil {
		return nil, Status(err)
	}
	s.opts.Metrics.ACUpdates.Inc()
	return r, nil
}
