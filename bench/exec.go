package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/status"

	"github.com/mound-build/mound/cas/digest"
)

// Workload names of the exec workload. Each is a latency at concurrency 1,
// on the target only: the floor does not execute.
const (
	// ExecuteNoop is a no-op action (/bin/true, empty input root)
	// executed with skip_cache_lookup on a warm worker: Execute call until
	// the done operation.
	ExecuteNoop = "Execute no-op"
	// GetActionResultHit is GetActionResult of the no-op action, which
	// the executions cached.
	GetActionResultHit = "GetActionResult hit"
	// ExecuteCached is Execute of the no-op action answered from the
	// action cache (cached_result), until the done operation.
	ExecuteCached = "Execute cached"
)

// Aims of the exec workload: absolute figures, as there is no floor to
// compare with.
const (
	// AimExecuteNoopP50 bounds the median no-op execution.
	AimExecuteNoopP50 = 25 * time.Millisecond
	// AimCacheHitP50 bounds the median action cache hit, through
	// GetActionResult and through Execute.
	AimCacheHitP50 = 2 * time.Millisecond
)

// execWarmup is how many executions run untimed first, so that the timed
// ones find a warm worker: its connection to the CAS open, the sandbox's
// binaries in the page cache, the server's code paths run once.
const execWarmup = 10

// execPhases sums where the time of the timed no-op executions went, from
// the ExecutedActionMetadata of each result.
type execPhases struct {
	queue, inputs, run, outputs, worker, overhead []time.Duration
}

// exec measures the exec workload on s: ExecActions executions of a new
// no-op action with skip_cache_lookup, then ExecCacheHits GetActionResult
// calls and as many cached Executes of it, each at concurrency 1.
func (b *bench) exec(ctx context.Context, s *server) (noop, get, cached Measure, phases execPhases, err error) {
	action, err := b.noopAction(ctx, s)
	if err != nil {
		return noop, get, cached, phases, err
	}
	for range execWarmup {
		if _, err := s.execute(ctx, action, true); err != nil {
			return noop, get, cached, phases, fmt.Errorf("warm-up: %w", err)
		}
	}

	durs := make([]time.Duration, b.opts.ExecActions)
	start := time.Now()
	for i := range durs {
		t0 := time.Now()
		resp, err := s.execute(ctx, action, true)
		durs[i] = time.Since(t0)
		if err != nil {
			return noop, get, cached, phases, err
		}
		if resp.GetCachedResult() {
			return noop, get, cached, phases, fmt.Errorf("%s: Execute with skip_cache_lookup of %v: %w: cached_result is true", s.name, action, ErrWrongAnswer)
		}
		phases.add(resp.GetResult().GetExecutionMetadata(), durs[i])
	}
	noop = latency(durs, time.Since(start))

	durs = make([]time.Duration, b.opts.ExecCacheHits)
	start = time.Now()
	for i := range durs {
		t0 := time.Now()
		r, err := s.ac.GetActionResult(ctx, &repb.GetActionResultRequest{InstanceName: s.instance, ActionDigest: action.Proto()})
		durs[i] = time.Since(t0)
		if err != nil {
			return noop, get, cached, phases, fmt.Errorf("%s: GetActionResult of the executed %v: %w", s.name, action, err)
		}
		if r.GetExitCode() != 0 {
			return noop, get, cached, phases, fmt.Errorf("%s: GetActionResult of %v: %w: exit code %d", s.name, action, ErrWrongAnswer, r.GetExitCode())
		}
	}
	get = latency(durs, time.Since(start))

	durs = make([]time.Duration, b.opts.ExecCacheHits)
	start = time.Now()
	for i := range durs {
		t0 := time.Now()
		resp, err := s.execute(ctx, action, false)
		durs[i] = time.Since(t0)
		if err != nil {
			return noop, get, cached, phases, err
		}
		if !resp.GetCachedResult() {
			return noop, get, cached, phases, fmt.Errorf("%s: Execute of the executed %v: %w: cached_result is false", s.name, action, ErrWrongAnswer)
		}
	}
	cached = latency(durs, time.Since(start))
	return noop, get, cached, phases, nil
}

// noopAction uploads a Command running /bin/true with an empty input root
// and an Action of it, new to the server (its environment holds a nonce of
// this run), and returns the Action's digest.
func (b *bench) noopAction(ctx context.Context, s *server) (digest.Digest, error) {
	nonce := fmt.Sprintf("%x", b.src.bytes(16))
	cmd, cmdDigest, err := digest.OfMessage(&repb.Command{
		Arguments:            []string{"/bin/true"},
		EnvironmentVariables: []*repb.Command_EnvironmentVariable{{Name: "MOUND_BENCH_NONCE", Value: nonce}},
	})
	if err != nil {
		return digest.Digest{}, err
	}
	action, actionDigest, err := digest.OfMessage(&repb.Action{CommandDigest: cmdDigest.Proto(), InputRootDigest: digest.Empty.Proto()})
	if err != nil {
		return digest.Digest{}, err
	}
	err = s.update(ctx, []blob{{data: cmd, d: cmdDigest}, {data: action, d: actionDigest}})
	return actionDigest, err
}

// execute runs one Execute of action to its done operation and checks that
// the action ran (or was found in the cache) with exit code 0. A stream
// that ends before the operation is done is followed with WaitExecution.
func (s *server) execute(ctx context.Context, action digest.Digest, skipCacheLookup bool) (*repb.ExecuteResponse, error) {
	stream, err := s.exec.Execute(ctx, &repb.ExecuteRequest{InstanceName: s.instance, ActionDigest: action.Proto(), SkipCacheLookup: skipCacheLookup})
	if err != nil {
		return nil, fmt.Errorf("%s: Execute of %v: %w", s.name, action, err)
	}
	op, err := lastOperation(stream)
	if err == nil && op != nil && !op.GetDone() {
		var wait repb.Execution_WaitExecutionClient
		if wait, err = s.exec.WaitExecution(ctx, &repb.WaitExecutionRequest{Name: op.GetName()}); err == nil {
			op, err = lastOperation(wait)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%s: Execute of %v: %w", s.name, action, err)
	}
	if !op.GetDone() {
		return nil, fmt.Errorf("%s: Execute of %v: %w: the operation never finished", s.name, action, ErrWrongAnswer)
	}
	resp := &repb.ExecuteResponse{}
	if err := op.GetResponse().UnmarshalTo(resp); err != nil {
		return nil, fmt.Errorf("%s: Execute of %v: %w: the done operation holds no ExecuteResponse: %v", s.name, action, ErrWrongAnswer, err)
	}
	if err := status.ErrorProto(resp.GetStatus()); err != nil {
		return nil, fmt.Errorf("%s: Execute of %v: %w", s.name, action, err)
	}
	if code := resp.GetResult().GetExitCode(); resp.GetResult() == nil || code != 0 {
		return nil, fmt.Errorf("%s: Execute of %v: %w: no result or exit code %d for /bin/true", s.name, action, ErrWrongAnswer, code)
	}
	return resp, nil
}

// lastOperation reads a stream of operations to its end and returns the
// last one (nil when there was none).
func lastOperation(stream interface {
	Recv() (*longrunningpb.Operation, error)
}) (*longrunningpb.Operation, error) {
	var last *longrunningpb.Operation
	for {
		op, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return last, nil
		}
		if err != nil {
			return last, err
		}
		last = op
	}
}

// add records the phases of one execution that took total at the client.
// Executions without complete metadata are left out.
func (p *execPhases) add(md *repb.ExecutedActionMetadata, total time.Duration) {
	ts := []time.Time{
		md.GetQueuedTimestamp().AsTime(), md.GetWorkerStartTimestamp().AsTime(),
		md.GetInputFetchStartTimestamp().AsTime(), md.GetInputFetchCompletedTimestamp().AsTime(),
		md.GetExecutionStartTimestamp().AsTime(), md.GetExecutionCompletedTimestamp().AsTime(),
		md.GetOutputUploadStartTimestamp().AsTime(), md.GetOutputUploadCompletedTimestamp().AsTime(),
		md.GetWorkerCompletedTimestamp().AsTime(),
	}
	if slices.ContainsFunc(ts, func(t time.Time) bool { return t.Unix() <= 0 }) {
		return
	}
	p.queue = append(p.queue, ts[1].Sub(ts[0]))
	p.inputs = append(p.inputs, ts[3].Sub(ts[2]))
	p.run = append(p.run, ts[5].Sub(ts[4]))
	p.outputs = append(p.outputs, ts[7].Sub(ts[6]))
	p.worker = append(p.worker, ts[8].Sub(ts[1]))
	p.overhead = append(p.overhead, total-ts[8].Sub(ts[0]))
}

// note describes the median phases, or says the target reported none.
func (p *execPhases) note() string {
	if len(p.queue) == 0 {
		return "no-op executions: the target reported no complete ExecutedActionMetadata, so no breakdown"
	}
	med := func(d []time.Duration) string {
		sorted := slices.Clone(d)
		slices.Sort(sorted)
		return fmt.Sprintf("%.2f ms", percentile(sorted, 0.5).Seconds()*1e3)
	}
	return fmt.Sprintf("no-op executions, medians from ExecutedActionMetadata: queued to worker start %s; on the worker %s "+
		"(input fetch %s, sandboxed run %s, output upload %s); client time outside queued..worker completed %s",
		med(p.queue), med(p.worker), med(p.inputs), med(p.run), med(p.outputs), med(p.overhead))
}
