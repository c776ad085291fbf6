package execution

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/cas/memstore"
	"github.com/mound-build/mound/scheduler"
)

// fakeQueue records submitted tasks; the test plays the scheduler.
type fakeQueue struct {
	mu        sync.Mutex
	submitted chan *submitted
	cancelled chan string
	err       error
}

type submitted struct {
	task   *scheduler.Task
	events chan scheduler.Event
}

func newFakeQueue() *fakeQueue {
	return &fakeQueue{submitted: make(chan *submitted, 10), cancelled: make(chan string, 10)}
}

func (q *fakeQueue) Submit(t *scheduler.Task) (<-chan scheduler.Event, error) {
	if q.err != nil {
		return nil, q.err
	}
	s := &submitted{task: t, events: make(chan scheduler.Event, 10)}
	s.events <- scheduler.Event{Stage: scheduler.Queued, At: time.Now()}
	q.submitted <- s
	return s.events, nil
}

func (q *fakeQueue) Cancel(id string) { q.cancelled <- id }

func (q *fakeQueue) next(t *testing.T) *submitted {
	t.Helper()
	select {
	case s := <-q.submitted:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("nothing submitted within 10s")
	}
	return nil
}

func (s *submitted) finish(exit int32) {
	s.events <- scheduler.Event{Stage: scheduler.Executing, Worker: "w1", At: time.Now()}
	s.events <- scheduler.Event{Stage: scheduler.Finished, At: time.Now(), Response: &repb.ExecuteResponse{
		Result: &repb.ActionResult{ExitCode: exit, ExecutionMetadata: &repb.ExecutedActionMetadata{Worker: "w1"}},
	}}
}

type env struct {
	store *memstore.Store
	queue *fakeQueue
	exec  repb.ExecutionClient
}

func newEnv(t *testing.T, opts Options) *env {
	t.Helper()
	return newEnvWith(t, opts, func(*Options) {})
}

// newEnvWith is newEnv with a chance to change the options, once they
// are complete, before the service starts.
func newEnvWith(t *testing.T, opts Options, change func(*Options)) *env {
	t.Helper()
	e := &env{store: memstore.New(), queue: newFakeQueue()}
	opts.Blobs, opts.Queue = e.store, e.queue
	opts.Actions = cas.CompleteActionCache{ActionCache: e.store, Blobs: e.store}
	change(&opts)
	svc, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	lis := bufconn.Listen(1 << 20)
	g := grpc.NewServer()
	repb.RegisterExecutionServer(g, svc)
	go g.Serve(lis)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); g.Stop() })
	e.exec = repb.NewExecutionClient(conn)
	return e
}

func (e *env) put(t *testing.T, m proto.Message) digest.Digest {
	t.Helper()
	b, d, err := digest.OfMessage(m)
	if err != nil {
		t.Fatal(err)
	}
	if errs := cas.PutBatch(context.Background(), e.store, []cas.Blob{{Digest: d, Data: b}}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	return d
}

// action stores a complete action with one input file and returns its digest.
func (e *env) action(t *testing.T, name string, a *repb.Action) digest.Digest {
	t.Helper()
	file := []byte("input of " + name)
	fd := digest.OfBytes(file)
	cas.PutBatch(context.Background(), e.store, []cas.Blob{{Digest: fd, Data: file}})
	root := e.put(t, &repb.Directory{Files: []*repb.FileNode{{Name: "in.txt", Digest: fd.Proto()}}})
	cmd := e.put(t, &repb.Command{Arguments: []string{"/bin/true", name}})
	if a == nil {
		a = &repb.Action{}
	}
	a.CommandDigest, a.InputRootDigest = cmd.Proto(), root.Proto()
	return e.put(t, a)
}

// drain reads operations to the end and returns them.
func drain(t *testing.T, stream interface {
	Recv() (*longrunningpb.Operation, error)
}) ([]*longrunningpb.Operation, error) {
	t.Helper()
	var ops []*longrunningpb.Operation
	for {
		op, err := stream.Recv()
		if err == io.EOF {
			return ops, nil
		}
		if err != nil {
			return ops, err
		}
		ops = append(ops, op)
	}
}

func response(t *testing.T, op *longrunningpb.Operation) *repb.ExecuteResponse {
	t.Helper()
	if !op.GetDone() || op.GetError() != nil {
		t.Fatalf("last operation not done with a response: %v", op)
	}
	r := &repb.ExecuteResponse{}
	if err := op.GetResponse().UnmarshalTo(r); err != nil {
		t.Fatal(err)
	}
	return r
}

func stages(ops []*longrunningpb.Operation) []repb.ExecutionStage_Value {
	var out []repb.ExecutionStage_Value
	for _, op := range ops {
		md := &repb.ExecuteOperationMetadata{}
		op.GetMetadata().UnmarshalTo(md)
		out = append(out, md.Stage)
	}
	return out
}

func TestExecuteRunsCachesAndHits(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	d := e.action(t, "a", nil)
	stream, err := e.exec.Execute(ctx, &repb.ExecuteRequest{ActionDigest: d.Proto()})
	if err != nil {
		t.Fatal(err)
	}
	e.queue.next(t).finish(0)
	ops, err := drain(t, stream)
	if err != nil {
		t.Fatal(err)
	}
	got := stages(ops)
	want := []repb.ExecutionStage_Value{repb.ExecutionStage_CACHE_CHECK, repb.ExecutionStage_QUEUED, repb.ExecutionStage_EXECUTING, repb.ExecutionStage_COMPLETED}
	if len(got) < 2 || got[0] != want[0] || got[len(got)-1] != want[3] {
		t.Fatalf("stages %v, want %v", got, want)
	}
	r := response(t, ops[len(ops)-1])
	if r.CachedResult || r.Result.GetExecutionMetadata().GetQueuedTimestamp() == nil {
		t.Fatalf("first run: %v", r)
	}
	// The second Execute is a cache hit without the scheduler.
	stream, _ = e.exec.Execute(ctx, &repb.ExecuteRequest{ActionDigest: d.Proto()})
	ops, err = drain(t, stream)
	if err != nil {
		t.Fatal(err)
	}
	if r := response(t, ops[len(ops)-1]); !r.CachedResult {
		t.Fatalf("second run not a cache hit: %v", r)
	}
	// skip_cache_lookup runs it again.
	stream, _ = e.exec.Execute(ctx, &repb.ExecuteRequest{ActionDigest: d.Proto(), SkipCacheLookup: true})
	e.queue.next(t).finish(0)
	if ops, _ = drain(t, stream); response(t, ops[len(ops)-1]).CachedResult {
		t.Fatal("skip_cache_lookup returned a cached result")
	}
}

func TestFailuresAreNotCached(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		a    *repb.Action
		exit int32
	}{{"exit 1", nil, 1}, {"do_not_cache", &repb.Action{DoNotCache: true}, 0}} {
		d := e.action(t, tc.name, tc.a)
		stream, _ := e.exec.Execute(ctx, &repb.ExecuteRequest{ActionDigest: d.Proto()})
		e.queue.next(t).finish(tc.exit)
		drain(t, stream)
		if _, err := e.store.GetActionResult(ctx, cas.ActionKey{Action: d}); !errors.Is(err, cas.ErrNotFound) {
			t.Errorf("%s: result was cached (%v)", tc.name, err)
		}
	}
}

func TestMissingInputsListEveryBlob(t *testing.T) {
	e := newEnv(t, Options{})
	file := digest.OfBytes([]byte("never uploaded"))
	sub := digest.OfBytes([]byte("a directory never uploaded"))
	root := e.put(t, &repb.Directory{
		Files:       []*repb.FileNode{{Name: "f", Digest: file.Proto()}},
		Directories: []*repb.DirectoryNode{{Name: "d", Digest: sub.Proto()}},
	})
	cmd := digest.OfBytes([]byte("no command"))
	d := e.put(t, &repb.Action{CommandDigest: cmd.Proto(), InputRootDigest: root.Proto()})
	stream, _ := e.exec.Execute(context.Background(), &repb.ExecuteRequest{ActionDigest: d.Proto()})
	_, err := drain(t, stream)
	st := status.Convert(err)
	if st.Code() != codes.FailedPrecondition {
		t.Fatalf("error %v, want FAILED_PRECONDITION", err)
	}
	subjects := map[string]bool{}
	for _, det := range st.Details() {
		if pf, ok := det.(*errdetails.PreconditionFailure); ok {
			for _, v := range pf.Violations {
				if v.Type != "MISSING" {
					t.Errorf("violation type %q", v.Type)
				}
				subjects[v.Subject] = true
			}
		}
	}
	for _, want := range []digest.Digest{file, sub, cmd} {
		if !subjects["blobs/"+want.String()] {
			t.Errorf("missing %v not listed; got %v", want, subjects)
		}
	}
	// A missing action is reported too.
	absent := digest.OfBytes([]byte("no action"))
	stream, _ = e.exec.Execute(context.Background(), &repb.ExecuteRequest{ActionDigest: absent.Proto()})
	if _, err := drain(t, stream); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("missing action: %v", err)
	}
}

func TestIdenticalActionsRunOnce(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	d := e.action(t, "shared", nil)
	s1, _ := e.exec.Execute(ctx, &repb.ExecuteRequest{ActionDigest: d.Proto()})
	sub := e.queue.next(t)
	// The second Execute must join while the first is in flight.
	s2, _ := e.exec.Execute(ctx, &repb.ExecuteRequest{ActionDigest: d.Proto()})
	if _, err := s2.Recv(); err != nil {
		t.Fatal(err)
	}
	sub.finish(0)
	ops1, err1 := drain(t, s1)
	ops2, err2 := drain(t, s2)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if response(t, ops1[len(ops1)-1]).Result.GetExitCode() != 0 || response(t, ops2[len(ops2)-1]).Result == nil {
		t.Fatal("joined execution did not get the result")
	}
	select {
	case s := <-e.queue.submitted:
		t.Fatalf("identical action submitted twice: %v", s.task.ID)
	default:
	}
}

func TestWaitExecutionAfterStreamLoss(t *testing.T) {
	e := newEnv(t, Options{})
	d := e.action(t, "wait", nil)
	ctx, cancel := context.WithCancel(context.Background())
	s1, _ := e.exec.Execute(ctx, &repb.ExecuteRequest{ActionDigest: d.Proto()})
	first, err := s1.Recv()
	if err != nil {
		t.Fatal(err)
	}
	sub := e.queue.next(t)
	cancel() // the client loses its stream
	w, err := e.exec.WaitExecution(context.Background(), &repb.WaitExecutionRequest{Name: first.Name})
	if err != nil {
		t.Fatal(err)
	}
	sub.finish(0)
	ops, err := drain(t, w)
	if err != nil || response(t, ops[len(ops)-1]).Result == nil {
		t.Fatalf("WaitExecution: %v %v", ops, err)
	}
	if _, err := drain(t, mustWait(t, e, "operations/unknown")); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown operation: %v", err)
	}
}

func mustWait(t *testing.T, e *env, name string) repb.Execution_WaitExecutionClient {
	w, err := e.exec.WaitExecution(context.Background(), &repb.WaitExecutionRequest{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestAbandonedActionIsCancelled(t *testing.T) {
	e := newEnv(t, Options{AbandonAfter: time.Millisecond})
	d := e.action(t, "abandoned", nil)
	ctx, cancel := context.WithCancel(context.Background())
	s, _ := e.exec.Execute(ctx, &repb.ExecuteRequest{ActionDigest: d.Proto()})
	s.Recv()
	sub := e.queue.next(t)
	cancel()
	select {
	case id := <-e.queue.cancelled:
		if id != sub.task.ID {
			t.Fatalf("cancelled %s, want %s", id, sub.task.ID)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("abandoned action was not cancelled")
	}
}

func TestTimeoutAboveMaximumIsRefused(t *testing.T) {
	e := newEnv(t, Options{MaxTimeout: time.Minute})
	d := e.action(t, "slow", &repb.Action{Timeout: durationpb.New(time.Hour)})
	s, _ := e.exec.Execute(context.Background(), &repb.ExecuteRequest{ActionDigest: d.Proto()})
	if _, err := drain(t, s); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("timeout above maximum: %v", err)
	}
	d = e.action(t, "default", nil)
	s, _ = e.exec.Execute(context.Background(), &repb.ExecuteRequest{ActionDigest: d.Proto()})
	sub := e.queue.next(t)
	// The 15m default is longer than this server's maximum, which an
	// action that asks for nothing gets instead.
	if sub.task.Timeout != time.Minute {
		t.Fatalf("default timeout %v, want the 1m maximum", sub.task.Timeout)
	}
	sub.finish(0)
	drain(t, s)
}

func TestNoWorkersFailsInResponse(t *testing.T) {
	e := newEnv(t, Options{})
	e.queue.err = scheduler.ErrNoWorkers
	d := e.action(t, "nowhere", nil)
	s, _ := e.exec.Execute(context.Background(), &repb.ExecuteRequest{ActionDigest: d.Proto()})
	ops, err := drain(t, s)
	if err != nil {
		t.Fatal(err)
	}
	if c := response(t, ops[len(ops)-1]).GetStatus().GetCode(); codes.Code(c) != codes.FailedPrecondition {
		t.Fatalf("status %v", c)
	}
}

// gatedActionCache holds every lookup until open is closed, so that a test
// can lose its stream while Execute is still checking the cache.
type gatedActionCache struct {
	cas.ActionCache
	entered chan struct{}
	open    chan struct{}
}

func (g *gatedActionCache) GetActionResult(ctx context.Context, key cas.ActionKey) (*repb.ActionResult, error) {
	g.entered <- struct{}{}
	<-g.open
	return g.ActionCache.GetActionResult(ctx, key)
}

// TestWaitExecutionAfterLossDuringCacheCheck loses the stream right after
// the first operation, while the cache is still being checked: the name the
// client holds must resolve, and the action must still run.
func TestWaitExecutionAfterLossDuringCacheCheck(t *testing.T) {
	gate := &gatedActionCache{entered: make(chan struct{}, 1), open: make(chan struct{})}
	e := newEnvWith(t, Options{}, func(opts *Options) {
		gate.ActionCache = opts.Actions
		opts.Actions = gate
	})
	d := e.action(t, "lost-early", nil)
	ctx, cancel := context.WithCancel(context.Background())
	s1, err := e.exec.Execute(ctx, &repb.ExecuteRequest{ActionDigest: d.Proto()})
	if err != nil {
		t.Fatal(err)
	}
	first, err := s1.Recv()
	if err != nil {
		t.Fatal(err)
	}
	<-gate.entered
	cancel() // the client loses its stream during CACHE_CHECK
	w := mustWait(t, e, first.Name)
	// The server answers WaitExecution at once with the current stage,
	// before the cache check (still held) has ended.
	if op, err := w.Recv(); err != nil || op.GetName() != first.Name {
		t.Fatalf("WaitExecution(%q) after losing the stream during the cache check: %v, %v", first.Name, op, err)
	}
	close(gate.open)
	e.queue.next(t).finish(0)
	ops, err := drain(t, w)
	if err != nil {
		t.Fatalf("WaitExecution(%q): %v", first.Name, err)
	}
	if response(t, ops[len(ops)-1]).Result == nil {
		t.Fatalf("WaitExecution: no result in %v", ops)
	}
}

// TestWaitExecutionFollowsJoinedRun loses a stream during CACHE_CHECK, as
// in TestWaitExecutionAfterLossDuringCacheCheck, for an action that is
// already running: the operation then joins the running one, and the
// client that came back with WaitExecution must see that run end.
func TestWaitExecutionFollowsJoinedRun(t *testing.T) {
	gate := &gatedActionCache{entered: make(chan struct{}, 1), open: make(chan struct{})}
	e := newEnvWith(t, Options{}, func(opts *Options) {
		gate.ActionCache = opts.Actions
		opts.Actions = gate
	})
	d := e.action(t, "joined-late", nil)
	// The first Execute skips the cache, so that only the second one
	// waits at the gate.
	s1, err := e.exec.Execute(context.Background(), &repb.ExecuteRequest{ActionDigest: d.Proto(), SkipCacheLookup: true})
	if err != nil {
		t.Fatal(err)
	}
	sub := e.queue.next(t)

	ctx, cancel := context.WithCancel(context.Background())
	s2, err := e.exec.Execute(ctx, &repb.ExecuteRequest{ActionDigest: d.Proto()})
	if err != nil {
		t.Fatal(err)
	}
	second, err := s2.Recv()
	if err != nil {
		t.Fatal(err)
	}
	<-gate.entered
	cancel() // the second client loses its stream during CACHE_CHECK
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	w, err := e.exec.WaitExecution(wctx, &repb.WaitExecutionRequest{Name: second.Name})
	if err != nil {
		t.Fatal(err)
	}
	if op, err := w.Recv(); err != nil || op.GetName() != second.Name {
		t.Fatalf("WaitExecution(%q): %v, %v", second.Name, op, err)
	}
	close(gate.open) // the cache misses; the operation joins the first run
	// The join shows as the first run's stage, QUEUED; only then may the
	// first run end, or the second would run on its own.
	if op, err := w.Recv(); err != nil {
		t.Fatalf("WaitExecution(%q) after the join: %v", second.Name, err)
	} else if got := stages([]*longrunningpb.Operation{op}); got[0] != repb.ExecutionStage_QUEUED {
		t.Fatalf("WaitExecution(%q) after the join: stage %v, want QUEUED", second.Name, got[0])
	}
	sub.finish(0)
	if ops, err := drain(t, s1); err != nil || response(t, ops[len(ops)-1]).Result == nil {
		t.Fatalf("first Execute: %v, %v", ops, err)
	}
	ops, err := drain(t, w)
	if err != nil {
		t.Fatalf("WaitExecution(%q) of an operation that joined a running action: %v", second.Name, err)
	}
	last := ops[len(ops)-1]
	if last.GetName() != second.Name || response(t, last).Result.GetExitCode() != 0 {
		t.Fatalf("WaitExecution(%q) ended with %v", second.Name, last)
	}
	select {
	case s := <-e.queue.submitted:
		t.Fatalf("identical action submitted twice: %v", s.task.ID)
	default:
	}
}

// TestRequestMetadataGoesWithTheAction sends the RequestMetadata header
// Bazel sends: the task the scheduler gets carries it, as its invocation id
// orders builds fairly.
func TestRequestMetadataGoesWithTheAction(t *testing.T) {
	e := newEnv(t, Options{})
	d := e.action(t, "with-metadata", nil)
	want := &repb.RequestMetadata{
		ToolDetails:             &repb.ToolDetails{ToolName: "bazel", ToolVersion: "4.2.3"},
		ActionId:                "action-1",
		ToolInvocationId:        "invocation-1",
		CorrelatedInvocationsId: "build-1",
		ActionMnemonic:          "CppCompile",
		TargetId:                "//app:calc",
	}
	b, err := proto.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), RequestMetadataKey, string(b))
	s, err := e.exec.Execute(ctx, &repb.ExecuteRequest{ActionDigest: d.Proto()})
	if err != nil {
		t.Fatal(err)
	}
	sub := e.queue.next(t)
	if !proto.Equal(sub.task.Metadata, want) {
		t.Errorf("task metadata %v, want %v", sub.task.Metadata, want)
	}
	sub.finish(0)
	drain(t, s)

	// Without the header there is no metadata, and the action still runs.
	d = e.action(t, "without-metadata", nil)
	s, _ = e.exec.Execute(context.Background(), &repb.ExecuteRequest{ActionDigest: d.Proto()})
	sub = e.queue.next(t)
	if sub.task.Metadata.GetToolInvocationId() != "" {
		t.Errorf("task metadata %v without a header", sub.task.Metadata)
	}
	sub.finish(0)
	drain(t, s)
}

// TestStagesStreamAsTheyHappen moves an action through the scheduler's
// events one at a time: each stage reaches the client before the next
// event happens.
func TestStagesStreamAsTheyHappen(t *testing.T) {
	e := newEnv(t, Options{})
	d := e.action(t, "staged", nil)
	s, err := e.exec.Execute(context.Background(), &repb.ExecuteRequest{ActionDigest: d.Proto()})
	if err != nil {
		t.Fatal(err)
	}
	next := func(want repb.ExecutionStage_Value) *longrunningpb.Operation {
		t.Helper()
		op, err := s.Recv()
		if err != nil {
			t.Fatalf("waiting for %v: %v", want, err)
		}
		if got := stages([]*longrunningpb.Operation{op})[0]; got != want {
			t.Fatalf("stage %v, want %v", got, want)
		}
		return op
	}
	next(repb.ExecutionStage_CACHE_CHECK)
	sub := e.queue.next(t) // Submit sent Queued
	next(repb.ExecutionStage_QUEUED)
	sub.events <- scheduler.Event{Stage: scheduler.Executing, Worker: "w1", At: time.Now()}
	next(repb.ExecutionStage_EXECUTING)
	// A lost worker: the action waits again, then runs elsewhere.
	sub.events <- scheduler.Event{Stage: scheduler.Queued, At: time.Now()}
	next(repb.ExecutionStage_QUEUED)
	sub.events <- scheduler.Event{Stage: scheduler.Executing, Worker: "w2", At: time.Now()}
	next(repb.ExecutionStage_EXECUTING)
	sub.events <- scheduler.Event{Stage: scheduler.Finished, At: time.Now(), Response: &repb.ExecuteResponse{
		Result: &repb.ActionResult{ExecutionMetadata: &repb.ExecutedActionMetadata{Worker: "w2"}},
	}}
	op := next(repb.ExecutionStage_COMPLETED)
	if r := response(t, op); r.GetResult().GetExecutionMetadata().GetWorker() != "w2" {
		t.Errorf("result %v, want the worker that ran it", r)
	}
	if _, err := s.Recv(); err != io.EOF {
		t.Errorf("after the done operation: %v, want the end of the stream", err)
	}
}

// TestPlatformOfTheAction checks which platform an action is queued for:
// Action.platform when it has properties, else Command.platform, else the
// default (empty) platform.
func TestPlatformOfTheAction(t *testing.T) {
	e := newEnv(t, Options{})
	props := func(kv ...string) *repb.Platform {
		p := &repb.Platform{}
		for i := 0; i+1 < len(kv); i += 2 {
			p.Properties = append(p.Properties, &repb.Platform_Property{Name: kv[i], Value: kv[i+1]})
		}
		return p
	}
	for _, tc := range []struct {
		name            string
		action, command *repb.Platform
		want            scheduler.Platform
	}{
		{"action over command", props("OSFamily", "linux", "network", "on"), props("OSFamily", "windows"), scheduler.PlatformOf(props("network", "on", "OSFamily", "linux"))},
		{"command when the action has none", nil, props("OSFamily", "windows"), scheduler.PlatformOf(props("OSFamily", "windows"))},
		{"default", nil, nil, ""},
	} {
		file := []byte("input")
		fd := digest.OfBytes(file)
		cas.PutBatch(context.Background(), e.store, []cas.Blob{{Digest: fd, Data: file}})
		root := e.put(t, &repb.Directory{Files: []*repb.FileNode{{Name: "in", Digest: fd.Proto()}}})
		cmd := e.put(t, &repb.Command{Arguments: []string{"true", tc.name}, Platform: tc.command})
		d := e.put(t, &repb.Action{CommandDigest: cmd.Proto(), InputRootDigest: root.Proto(), Platform: tc.action})
		s, err := e.exec.Execute(context.Background(), &repb.ExecuteRequest{ActionDigest: d.Proto()})
		if err != nil {
			t.Fatal(err)
		}
		sub := e.queue.next(t)
		if sub.task.Platform != tc.want {
			t.Errorf("%s: queued for platform %v, want %v", tc.name, sub.task.Platform, tc.want)
		}
		sub.finish(0)
		drain(t, s)
	}
}

func TestDefaultTimeoutWithinMaximum(t *testing.T) {
	store := memstore.New()
	base := Options{Blobs: store, Actions: store, Queue: newFakeQueue()}
	for _, tc := range []struct {
		def, max time.Duration
		ok       bool
	}{
		{0, 0, true},
		{0, time.Minute, true}, // the default is then the maximum
		{time.Minute, time.Minute, true},
		{time.Hour, 10 * time.Minute, false},
		{4 * time.Hour, 0, false}, // above the 3h default maximum
		{-time.Second, 0, false},
	} {
		opts := base
		opts.DefaultTimeout, opts.MaxTimeout = tc.def, tc.max
		if _, err := New(opts); (err == nil) != tc.ok {
			t.Errorf("New with default timeout %v and maximum %v: %v, want ok = %v", tc.def, tc.max, err, tc.ok)
		}
	}
}
