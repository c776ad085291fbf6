package scheduler

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/scheduler/workerpb"
)

// harness runs a Scheduler behind an in-process gRPC server.
type harness struct {
	s    *Scheduler
	conn *grpc.ClientConn
}

func newHarness(t *testing.T, opts Options) *harness {
	t.Helper()
	s := New(opts)
	lis := bufconn.Listen(1 << 20)
	g := grpc.NewServer()
	workerpb.RegisterSchedulerServer(g, s)
	workerpb.RegisterAdminServer(g, s)
	go g.Serve(lis)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		g.Stop()
		s.Close()
	})
	return &harness{s: s, conn: conn}
}

// fakeWorker is a worker session driven by the test.
type fakeWorker struct {
	t      *testing.T
	stream workerpb.Scheduler_ConnectClient
	cancel context.CancelFunc
	msgs   chan *workerpb.SchedulerMessage
}

func (h *harness) connect(t *testing.T, name string, jobs int, props ...string) *fakeWorker {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := workerpb.NewSchedulerClient(h.conn).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hello := &workerpb.Hello{Name: name, Jobs: int32(jobs)}
	for i := 0; i+1 < len(props); i += 2 {
		hello.Platform = append(hello.Platform, &workerpb.Property{Name: props[i], Value: props[i+1]})
	}
	if err := stream.Send(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Hello{Hello: hello}}); err != nil {
		t.Fatal(err)
	}
	w := &fakeWorker{t: t, stream: stream, cancel: cancel, msgs: make(chan *workerpb.SchedulerMessage, 100)}
	if m, err := stream.Recv(); err != nil || m.GetWelcome() == nil {
		t.Fatalf("expected Welcome, got %v, %v", m, err)
	}
	go func() {
		defer close(w.msgs)
		for {
			m, err := stream.Recv()
			if err != nil {
				return
			}
			w.msgs <- m
		}
	}()
	t.Cleanup(cancel)
	// Wait until the scheduler lists the worker, so dispatch can reach it.
	waitFor(t, func() bool {
		resp, _ := workerpb.NewAdminClient(h.conn).ListWorkers(context.Background(), &workerpb.ListWorkersRequest{})
		for _, i := range resp.GetWorkers() {
			if i.Name == name {
				return true
			}
		}
		return false
	})
	return w
}

// next returns the next message from the scheduler, failing after a while.
func (w *fakeWorker) next() *workerpb.SchedulerMessage {
	w.t.Helper()
	select {
	case m, ok := <-w.msgs:
		if !ok {
			w.t.Fatal("session closed")
		}
		return m
	case <-time.After(10 * time.Second):
		w.t.Fatal("no message from the scheduler within 10s")
	}
	return nil
}

// idle checks that no message is pending right now.
func (w *fakeWorker) idle() {
	w.t.Helper()
	select {
	case m := <-w.msgs:
		w.t.Fatalf("unexpected message %v", m)
	default:
	}
}

func (w *fakeWorker) finish(id string, exit int32) {
	w.t.Helper()
	b, _ := proto.Marshal(&repb.ExecuteResponse{Result: &repb.ActionResult{ExitCode: exit}})
	if err := w.stream.Send(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Finished{Finished: &workerpb.TaskFinished{TaskId: id, ExecuteResponse: b}}}); err != nil {
		w.t.Fatal(err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	poll := time.NewTicker(time.Millisecond)
	defer poll.Stop()
	for !cond() {
		select {
		case <-deadline:
			t.Fatal("condition not reached within 10s")
		case <-poll.C:
		}
	}
}

func newTask(id, invocation string, props ...string) *Task {
	p := &repb.Platform{}
	for i := 0; i+1 < len(props); i += 2 {
		p.Properties = append(p.Properties, &repb.Platform_Property{Name: props[i], Value: props[i+1]})
	}
	return &Task{
		ID: id, Key: cas.ActionKey{Action: digest.OfBytes([]byte(id))}, Platform: PlatformOf(p),
		Metadata: &repb.RequestMetadata{ToolInvocationId: invocation},
	}
}

// events collects a task's events up to Finished.
func finished(t *testing.T, ch <-chan Event) (stages []Stage, last Event) {
	t.Helper()
	for {
		select {
		case ev := <-ch:
			stages = append(stages, ev.Stage)
			if ev.Stage == Finished {
				return stages, ev
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("task did not finish; stages so far %v", stages)
		}
	}
}

func TestRunsOnMatchingPool(t *testing.T) {
	h := newHarness(t, Options{})
	linux := h.connect(t, "linux", 1, "OSFamily", "linux")
	gpu := h.connect(t, "gpu", 1, "OSFamily", "linux", "gpu", "yes")
	ev, err := h.s.Submit(newTask("t1", "inv", "OSFamily", "linux", "gpu", "yes"))
	if err != nil {
		t.Fatal(err)
	}
	m := gpu.next().GetTask()
	if m.GetTaskId() != "t1" {
		t.Fatalf("gpu worker got %v", m)
	}
	// The worker gets the client's RequestMetadata with the task.
	md := &repb.RequestMetadata{}
	if err := proto.Unmarshal(m.GetRequestMetadata(), md); err != nil || md.GetToolInvocationId() != "inv" {
		t.Errorf("task's request_metadata %v (%v), want tool_invocation_id %q", md, err, "inv")
	}
	linux.idle()
	gpu.finish("t1", 0)
	stages, last := finished(t, ev)
	if fmt.Sprint(stages) != fmt.Sprint([]Stage{Queued, Executing, Finished}) || last.Response.GetResult() == nil {
		t.Fatalf("stages %v, last %v", stages, last)
	}
}

func TestUnservedPlatformFailsFast(t *testing.T) {
	h := newHarness(t, Options{StartupGrace: time.Nanosecond})
	h.connect(t, "linux", 1, "OSFamily", "linux")
	_, err := h.s.Submit(newTask("t", "inv", "OSFamily", "windows"))
	if !errors.Is(err, ErrNoWorkers) {
		t.Fatalf("Submit for an unserved platform: %v", err)
	}
}

func TestLostWorkerRequeues(t *testing.T) {
	h := newHarness(t, Options{MaxAttempts: 2})
	w1 := h.connect(t, "w1", 1)
	ev, err := h.s.Submit(newTask("t", "inv"))
	if err != nil {
		t.Fatal(err)
	}
	if w1.next().GetTask().GetAttempt() != 1 {
		t.Fatal("first attempt not numbered 1")
	}
	w1.cancel() // the worker dies mid-task
	w2 := h.connect(t, "w2", 1)
	if got := w2.next().GetTask(); got.GetTaskId() != "t" || got.GetAttempt() != 2 {
		t.Fatalf("second worker got %v", got)
	}
	w2.finish("t", 0)
	if stages, last := finished(t, ev); last.Response.GetStatus().GetCode() != 0 || len(stages) != 5 {
		t.Fatalf("stages %v, response %v", stages, last.Response)
	}

	// A task whose workers keep dying fails after MaxAttempts.
	ev, _ = h.s.Submit(newTask("doomed", "inv"))
	w2.next()
	w2.cancel()
	w3 := h.connect(t, "w3", 1)
	w3.next()
	w3.cancel()
	_, last := finished(t, ev)
	if codes.Code(last.Response.GetStatus().GetCode()) != codes.Unavailable {
		t.Fatalf("after repeated loss: %v", last.Response.GetStatus())
	}
}

func TestRoundRobinBetweenBuilds(t *testing.T) {
	h := newHarness(t, Options{})
	// Queue before any worker connects (within the startup grace).
	for i := 0; i < 4; i++ {
		h.s.Submit(newTask(fmt.Sprintf("big%d", i), "big"))
	}
	h.s.Submit(newTask("small0", "small"))
	h.s.Submit(newTask("small1", "small"))
	w := h.connect(t, "w", 1)
	var order []string
	for i := 0; i < 6; i++ {
		id := w.next().GetTask().GetTaskId()
		order = append(order, id)
		w.finish(id, 0)
	}
	if got := fmt.Sprint(order); got != "[big0 small0 big1 small1 big2 big3]" {
		t.Fatalf("dispatch order %s", got)
	}
}

func TestPauseAndDrain(t *testing.T) {
	h := newHarness(t, Options{})
	admin := workerpb.NewAdminClient(h.conn)
	w := h.connect(t, "w", 2)
	set := func(st workerpb.WorkerState) {
		if _, err := admin.SetWorkerState(context.Background(), &workerpb.SetWorkerStateRequest{Name: "w", State: st}); err != nil {
			t.Fatal(err)
		}
	}
	set(workerpb.WorkerState_PAUSED)
	ev, _ := h.s.Submit(newTask("t1", "inv"))
	w.idle()
	set(workerpb.WorkerState_ACTIVE)
	if w.next().GetTask().GetTaskId() != "t1" {
		t.Fatal("unpaused worker did not get the task")
	}
	set(workerpb.WorkerState_DRAINING)
	ev2, _ := h.s.Submit(newTask("t2", "inv"))
	w.idle()
	w.finish("t1", 0)
	finished(t, ev)
	if w.next().GetGoodbye() == nil {
		t.Fatal("drained worker was not told to leave")
	}
	// Told to leave, it stays out of work: unpausing it now would hand
	// tasks to a session about to end, and cost them an attempt.
	if _, err := admin.SetWorkerState(context.Background(), &workerpb.SetWorkerStateRequest{Name: "w", State: workerpb.WorkerState_ACTIVE}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("unpausing a worker told to leave: %v, want FAILED_PRECONDITION", err)
	}
	w.idle()
	// The task queued meanwhile runs on a replacement worker.
	w2 := h.connect(t, "w2", 1)
	if w2.next().GetTask().GetTaskId() != "t2" {
		t.Fatal("replacement did not get the queued task")
	}
	w2.finish("t2", 0)
	finished(t, ev2)
	if _, err := admin.SetWorkerState(context.Background(), &workerpb.SetWorkerStateRequest{Name: "nobody", State: workerpb.WorkerState_PAUSED}); err == nil {
		t.Fatal("SetWorkerState of an unknown worker succeeded")
	}
}

func TestCancel(t *testing.T) {
	h := newHarness(t, Options{})
	w := h.connect(t, "w", 1)
	running, _ := h.s.Submit(newTask("running", "inv"))
	queued, _ := h.s.Submit(newTask("queued", "inv"))
	w.next()
	h.s.Cancel("queued")
	if _, last := finished(t, queued); codes.Code(last.Response.GetStatus().GetCode()) != codes.Canceled {
		t.Fatalf("cancelled queued task: %v", last.Response)
	}
	h.s.Cancel("running")
	if c := w.next().GetCancel(); c.GetTaskId() != "running" {
		t.Fatalf("worker got %v, want a Cancel", c)
	}
	w.finish("running", 137)
	finished(t, running)
}

// TestUnservedPlatformFailsAfterGrace queues tasks while the scheduler is
// new, as workers may still be connecting: one for a platform a worker then
// offers runs, one for a platform nobody offers fails once the grace is
// over, with a message naming both platforms.
func TestUnservedPlatformFailsAfterGrace(t *testing.T) {
	// Long enough for the worker below to connect within it, even on a
	// loaded machine.
	h := newHarness(t, Options{StartupGrace: 2 * time.Second})
	served, err := h.s.Submit(newTask("served", "inv", "OSFamily", "linux"))
	if err != nil {
		t.Fatal(err)
	}
	unserved, err := h.s.Submit(newTask("unserved", "inv", "OSFamily", "windows"))
	if err != nil {
		t.Fatalf("Submit within the startup grace: %v", err)
	}
	w := h.connect(t, "linux", 1, "OSFamily", "linux")
	if id := w.next().GetTask().GetTaskId(); id != "served" {
		t.Fatalf("worker got %q", id)
	}
	w.finish("served", 0)
	finished(t, served)
	_, last := finished(t, unserved)
	st := last.Response.GetStatus()
	if codes.Code(st.GetCode()) != codes.FailedPrecondition || !strings.Contains(st.GetMessage(), "{OSFamily=windows}") || !strings.Contains(st.GetMessage(), "{OSFamily=linux}") {
		t.Fatalf("task for an unserved platform ended with %v; want FAILED_PRECONDITION naming the platform and those offered", st)
	}
	// Past the grace, Submit fails at once.
	if _, err := h.s.Submit(newTask("late", "inv", "OSFamily", "windows")); !errors.Is(err, ErrNoWorkers) {
		t.Fatalf("Submit for an unserved platform after the grace: %v", err)
	}
}
