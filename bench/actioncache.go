package bench

import (
	"context"
	"fmt"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"
)

// acBlobs are the blobs every action result of the ActionCache workload
// references, uploaded once per server: a server may check that the
// outputs of a result exist before storing or returning it.
type acBlobs struct {
	stdout, file blob
}

// actionCache stores new action results with UpdateActionResult, then
// fetches them with GetActionResult, at concurrency c, and returns both
// rates in operations/s.
func (b *bench) actionCache(ctx context.Context, s *server, c int) (update, get Measure, err error) {
	if s.acBlobs == nil {
		bl := b.src.smallBlobs(2, 1<<10, 8<<10)
		if err := s.update(ctx, bl); err != nil {
			return update, get, err
		}
		s.acBlobs = &acBlobs{stdout: bl[0], file: bl[1]}
	}
	// Action digests name actions that are never uploaded: the action
	// cache is keyed by them and needs no Action in the CAS.
	actions := b.src.hashes(b.opts.ActionResults, 1<<10)
	results := make([]*repb.ActionResult, len(actions))
	for i := range results {
		results[i] = &repb.ActionResult{
			OutputFiles: []*repb.OutputFile{{
				Path:   fmt.Sprintf("bazel-out/k8-fastbuild/bin/pkg/obj%d.o", i),
				Digest: s.acBlobs.file.d.Proto(),
			}},
			StdoutDigest:      s.acBlobs.stdout.d.Proto(),
			ExecutionMetadata: &repb.ExecutedActionMetadata{Worker: "mound-bench"},
		}
	}
	elapsed, err := parallel(ctx, len(actions), c, func(ctx context.Context, _, i int) error {
		_, err := s.ac.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{
			InstanceName: s.instance, ActionDigest: actions[i].Proto(), ActionResult: results[i],
		})
		if err != nil {
			return fmt.Errorf("%s: UpdateActionResult of %v: %w", s.name, actions[i], err)
		}
		return nil
	})
	if err != nil {
		return update, get, err
	}
	update = opsRate(len(actions), 0, elapsed)
	elapsed, err = parallel(ctx, len(actions), c, func(ctx context.Context, _, i int) error {
		got, err := s.ac.GetActionResult(ctx, &repb.GetActionResultRequest{
			InstanceName: s.instance, ActionDigest: actions[i].Proto(),
		})
		if err != nil {
			return fmt.Errorf("%s: GetActionResult of %v: %w", s.name, actions[i], err)
		}
		if !sameResult(got, results[i]) {
			return fmt.Errorf("%s: GetActionResult of %v: %w: exit code, stdout or outputs differ from the result stored", s.name, actions[i], ErrWrongAnswer)
		}
		return nil
	})
	if err != nil {
		return update, get, err
	}
	return update, opsRate(len(actions), 0, elapsed), nil
}

// sameResult reports whether got is the result stored as want, in the
// fields a client acts on (a server may add metadata or inline content).
func sameResult(got, want *repb.ActionResult) bool {
	if got.GetExitCode() != want.GetExitCode() ||
		!proto.Equal(got.GetStdoutDigest(), want.GetStdoutDigest()) ||
		len(got.GetOutputFiles()) != len(want.GetOutputFiles()) {
		return false
	}
	for i, f := range got.GetOutputFiles() {
		w := want.GetOutputFiles()[i]
		if f.GetPath() != w.GetPath() || !proto.Equal(f.GetDigest(), w.GetDigest()) {
			return false
		}
	}
	return true
}
