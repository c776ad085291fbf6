package execution

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/google/uuid"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/cas/resource"
	"github.com/mound-build/mound/cas/service"
	"github.com/mound-build/mound/scheduler"
)

// Queue is what execution needs of a scheduler.
type Queue interface {
	// Submit queues t; events arrive on the channel, Finished last.
	Submit(t *scheduler.Task) (<-chan scheduler.Event, error)
	// Cancel stops a queued or running task; it still finishes.
	Cancel(id string)
}

// Options configure the Execution service. Blobs, Actions and Queue are
// required.
type Options struct {
	Blobs interface {
		cas.BlobGetter
		cas.MissingFinder
	}
	// Actions is the action cache; reads should go through
	// cas.CompleteActionCache.
	Actions cas.ActionCache
	Queue   Queue
	// DefaultTimeout applies to actions without a timeout; 0 means 15m,
	// or MaxTimeout when that is shorter. It may not exceed MaxTimeout.
	DefaultTimeout time.Duration
	// MaxTimeout is the longest timeout an action may ask for; 0 means 3h.
	MaxTimeout time.Duration
	// Retention is how long a finished operation stays resolvable for
	// WaitExecution; 0 means 10m.
	Retention time.Duration
	// AbandonAfter is how long a running operation nobody follows any more
	// keeps running before it is cancelled; 0 means 1m. Clients that lose
	// their stream come back with WaitExecution within it.
	AbandonAfter time.Duration
	Logger       *slog.Logger
}

// Execution implements repb.ExecutionServer.
type Execution struct {
	repb.UnimplementedExecutionServer
	opts Options
	ops  *operations
	wg   sync.WaitGroup // runs in progress
}

// New returns the Execution service.
func New(opts Options) (*Execution, error) {
	if opts.Blobs == nil || opts.Actions == nil || opts.Queue == nil {
		return nil, errors.New("execution: Options.Blobs, Actions and Queue are required")
	}
	if opts.MaxTimeout == 0 {
		opts.MaxTimeout = 3 * time.Hour
	}
	if opts.DefaultTimeout == 0 {
		opts.DefaultTimeout = min(15*time.Minute, opts.MaxTimeout)
	}
	// An action that asks for no timeout must not get more than one that
	// asks for the most the server allows.
	if opts.DefaultTimeout < 0 || opts.DefaultTimeout > opts.MaxTimeout {
		return nil, fmt.Errorf("execution: the default action timeout %v is not within (0, %v], the maximum", opts.DefaultTimeout, opts.MaxTimeout)
	}
	if opts.Retention == 0 {
		opts.Retention = 10 * time.Minute
	}
	if opts.AbandonAfter == 0 {
		opts.AbandonAfter = time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Execution{opts: opts, ops: newOperations()}, nil
}

// Close waits for runs in progress to finish.
func (e *Execution) Close() { e.wg.Wait() }

// RequestMetadataKey is the gRPC header carrying a serialized
// RequestMetadata.
const RequestMetadataKey = "build.bazel.remote.execution.v2.requestmetadata-bin"

// RequestMetadata returns the client's RequestMetadata, or nil.
func RequestMetadata(ctx context.Context) *repb.RequestMetadata {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get(RequestMetadataKey) {
		rm := &repb.RequestMetadata{}
		if proto.Unmarshal([]byte(v), rm) == nil {
			return rm
		}
	}
	return nil
}

// Execute implements repb.ExecutionServer.
func (e *Execution) Execute(req *repb.ExecuteRequest, stream repb.Execution_ExecuteServer) error {
	ctx := stream.Context()
	if err := resource.ValidateInstance(req.GetInstanceName()); err != nil {
		return service.Status(err)
	}
	d, err := digest.FromProto(req.GetActionDigest())
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "action_digest: %v", err)
	}
	key := cas.ActionKey{Instance: req.GetInstanceName(), Action: d}
	name := "operations/" + uuid.NewString()
	r := newRun(key, name, RequestMetadata(ctx))
	// The name is resolvable from the moment the client can know it: a
	// client that loses the stream right after the first message comes
	// back with WaitExecution.
	e.ops.add(name, r)
	sent := first(r, name)
	if err := stream.Send(sent); err != nil {
		e.ops.finished(r, e.opts.Retention)
		return err
	}
	// Checking the cache and the inputs belongs to the operation, not to
	// this stream, so it goes on when the stream is lost.
	work, cancel := context.WithTimeout(context.WithoutCancel(ctx), startTimeout)
	defer cancel()
	cur, err := e.start(work, name, r, req.GetSkipCacheLookup())
	if err != nil {
		// Followers that came back with WaitExecution see the error too.
		e.ops.finished(r, e.opts.Retention)
		r.set(repb.ExecutionStage_COMPLETED, "", &repb.ExecuteResponse{Status: status.Convert(err).Proto()})
		return err
	}
	return e.follow(ctx, name, cur, stream, sent)
}

// startTimeout bounds the work of Execute before an action is queued: an
// AC lookup and a walk of the input tree in the local store, which take
// milliseconds even for large trees.
const startTimeout = 5 * time.Minute

// start answers r from the action cache, joins it to an identical run in
// flight, or queues it, and returns the run the operation name follows. An
// error is a gRPC status for the Execute call.
func (e *Execution) start(ctx context.Context, name string, r *run, skipCache bool) (*run, error) {
	key := r.key
	if !skipCache {
		result, err := e.opts.Actions.GetActionResult(ctx, key)
		if err == nil {
			r.set(repb.ExecutionStage_COMPLETED, "", &repb.ExecuteResponse{Result: result, CachedResult: true, Status: okStatus()})
			e.ops.finished(r, e.opts.Retention)
			return r, nil
		}
		if !errors.Is(err, cas.ErrNotFound) && service.Code(err) != codes.NotFound {
			return nil, service.Status(err)
		}
	}
	l, err := load(ctx, e.opts.Blobs, key.Action)
	if err != nil {
		return nil, service.Status(err)
	}
	timeout, err := e.timeout(l.action)
	if err != nil {
		return nil, err
	}
	if !l.action.GetDoNotCache() {
		if cur := e.ops.join(key, name, r); cur != nil {
			return cur, nil
		}
	}
	platform := l.action.GetPlatform()
	if len(platform.GetProperties()) == 0 {
		platform = l.command.GetPlatform()
	}
	task := &scheduler.Task{
		ID: name, Key: key, Platform: scheduler.PlatformOf(platform),
		Action: l.actionBytes, Command: l.commandBytes, Timeout: timeout, Metadata: r.metadata,
	}
	events, err := e.opts.Queue.Submit(task)
	if err != nil {
		e.ops.finished(r, e.opts.Retention)
		r.set(repb.ExecutionStage_COMPLETED, "", &repb.ExecuteResponse{Status: statusProto(codes.FailedPrecondition, err.Error())})
		return r, nil
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.track(r, events, l.action.GetDoNotCache())
	}()
	return r, nil
}

func (e *Execution) timeout(a *repb.Action) (time.Duration, error) {
	t := a.GetTimeout().AsDuration()
	if a.GetTimeout() == nil || t == 0 {
		return e.opts.DefaultTimeout, nil
	}
	if t < 0 || t > e.opts.MaxTimeout {
		return 0, status.Errorf(codes.InvalidArgument, "action timeout %v is outside (0, %v], this server's maximum", t, e.opts.MaxTimeout)
	}
	return t, nil
}

// first is the CACHE_CHECK operation sent before anything else happens.
func first(r *run, name string) *longrunningpb.Operation {
	op, _, _ := r.snapshot(name)
	return op
}

// track moves a run through the scheduler's events and caches its result.
func (e *Execution) track(r *run, events <-chan scheduler.Event, doNotCache bool) {
	var queuedAt time.Time
	for ev := range events {
		switch ev.Stage {
		case scheduler.Queued:
			if queuedAt.IsZero() {
				queuedAt = ev.At
			}
			r.set(repb.ExecutionStage_QUEUED, "", nil)
		case scheduler.Executing:
			r.set(repb.ExecutionStage_EXECUTING, ev.Worker, nil)
		case scheduler.Finished:
			resp := ev.Response
			if res := resp.GetResult(); res != nil {
				if res.ExecutionMetadata == nil {
					res.ExecutionMetadata = &repb.ExecutedActionMetadata{}
				}
				res.ExecutionMetadata.QueuedTimestamp = timestamppb.New(queuedAt)
			}
			if resp.GetStatus().GetCode() == int32(codes.OK) && resp.GetResult() != nil &&
				resp.GetResult().GetExitCode() == 0 && !doNotCache {
				if err := e.opts.Actions.UpdateActionResult(context.Background(), r.key, resp.GetResult()); err != nil {
					e.opts.Logger.Error("cache action result", "action", r.key.Action, "err", err)
				}
			}
			e.ops.finished(r, e.opts.Retention)
			r.set(repb.ExecutionStage_COMPLETED, "", resp)
			return
		}
	}
}

// WaitExecution implements repb.ExecutionServer.
func (e *Execution) WaitExecution(req *repb.WaitExecutionRequest, stream repb.Execution_WaitExecutionServer) error {
	r := e.ops.get(req.GetName())
	if r == nil {
		return status.Errorf(codes.NotFound, "operation %q is unknown or finished too long ago", req.GetName())
	}
	return e.follow(stream.Context(), req.GetName(), r, stream, nil)
}

type opSender interface {
	Send(*longrunningpb.Operation) error
}

// follow streams r's changes as the operation name until it is done; last
// is what the stream already carries, if anything, so it is not sent again.
// When r merges into another run, follow goes on with that one. When the
// last follower of an unfinished run leaves, the run is cancelled unless
// someone follows it again within AbandonAfter.
func (e *Execution) follow(ctx context.Context, name string, r *run, stream opSender, last *longrunningpb.Operation) error {
	e.arrive(r)
	defer func() { e.leave(r) }() // the run followed last
	for {
		if next := r.joinedRun(); next != nil {
			e.arrive(next)
			e.leave(r)
			r = next
			continue
		}
		op, done, changed := r.snapshot(name)
		if last == nil || !proto.Equal(op, last) {
			if err := stream.Send(op); err != nil {
				return err
			}
			last = op
		}
		if done {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}

// arrive counts a new follower of r.
func (e *Execution) arrive(r *run) {
	r.mu.Lock()
	r.waiters++
	r.mu.Unlock()
}

// leave counts a follower of r gone, and cancels r if nobody follows it
// again within AbandonAfter. A run merged into another is not cancelled:
// it has no task of its own.
func (e *Execution) leave(r *run) {
	r.mu.Lock()
	r.waiters--
	idle := r.waiters == 0 && r.response == nil && r.joined == nil
	r.mu.Unlock()
	if !idle {
		return
	}
	time.AfterFunc(e.opts.AbandonAfter, func() {
		r.mu.Lock()
		still := r.waiters == 0 && r.response == nil && r.joined == nil
		r.mu.Unlock()
		if still {
			e.opts.Logger.Info("cancelling abandoned action", "operation", r.taskID, "action", r.key.Action)
			e.opts.Queue.Cancel(r.taskID)
		}
	})
}

func okStatus() *spb.Status { return &spb.Status{} }

func statusProto(c codes.Code, msg string) *spb.Status {
	return &spb.Status{Code: int32(c), Message: msg}
}
