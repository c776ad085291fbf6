package scheduler

import (
	"errors"
	"io"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mound-build/mound/scheduler/workerpb"
)

// worker is a connected worker's session; its fields are guarded by
// Scheduler.mu.
type worker struct {
	name        string
	platform    Platform
	jobs        int
	state       workerpb.WorkerState
	running     map[string]*task
	send        chan *workerpb.SchedulerMessage
	gone        chan struct{} // closed when the scheduler ends the session
	connectedAt time.Time
	lastSeen    time.Time
	done        int64
	// leaving is set once the worker was told Goodbye: it gets no more
	// tasks, whatever an operator asks next.
	leaving bool
}

// sendLocked queues msg for the worker. The queue holds more than the worker
// can have outstanding; a worker that does not read it is lost.
func (w *worker) sendLocked(s *Scheduler, msg *workerpb.SchedulerMessage) {
	select {
	case w.send <- msg:
	default:
		s.loseLocked(w, "not reading its stream")
	}
}

// Connect implements workerpb.SchedulerServer: one worker's session.
func (s *Scheduler) Connect(stream workerpb.Scheduler_ConnectServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	hello := first.GetHello()
	if hello == nil || hello.GetName() == "" || hello.GetJobs() < 1 {
		return status.Error(codes.InvalidArgument, "the first message must be a Hello with a name and jobs >= 1")
	}
	w := &worker{
		name: hello.GetName(), platform: PlatformOfWorker(hello.GetPlatform()), jobs: int(hello.GetJobs()),
		state: workerpb.WorkerState_ACTIVE, running: map[string]*task{},
		// Room for a Task per slot, their Cancels, and a Goodbye.
		send: make(chan *workerpb.SchedulerMessage, 2*int(hello.GetJobs())+8),
		gone: make(chan struct{}), connectedAt: time.Now(), lastSeen: time.Now(),
	}
	if err := stream.Send(&workerpb.SchedulerMessage{Kind: &workerpb.SchedulerMessage_Welcome{
		Welcome: &workerpb.Welcome{HeartbeatInterval: durationpb.New(s.opts.HeartbeatInterval)},
	}}); err != nil {
		return err
	}
	if err := s.register(w); err != nil {
		return err
	}

	recvErr := make(chan error, 1)
	go func() {
		for {
			msg, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			s.handle(w, msg)
		}
	}()
	for {
		select {
		case msg := <-w.send:
			if err := stream.Send(msg); err != nil {
				s.lose(w, "send failed: "+err.Error())
				return err
			}
		case err := <-recvErr:
			reason := "disconnected"
			if err != nil && !errors.Is(err, io.EOF) {
				reason = "disconnected: " + err.Error()
			}
			s.lose(w, reason)
			return nil
		case <-w.gone:
			return status.Error(codes.Unavailable, "session ended by the scheduler")
		}
	}
}

func (s *Scheduler) register(w *worker) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ending {
		return status.Error(codes.Unavailable, "the server is stopping")
	}
	if old := s.workers[w.name]; old != nil {
		// The same worker reconnecting: its old session is dead.
		s.loseLocked(old, "replaced by a new session")
	}
	s.workers[w.name] = w
	p := s.pools[w.platform]
	if p == nil {
		p = newPool(w.platform)
		s.pools[w.platform] = p
	}
	p.served = true
	p.workers[w.name] = w
	s.log.Info("worker connected", "worker", w.name, "platform", w.platform.String(), "jobs", w.jobs)
	s.dispatchLocked(p)
	return nil
}

// handle applies one message from a worker.
func (s *Scheduler) handle(w *worker, msg *workerpb.WorkerMessage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w.lastSeen = time.Now()
	fin := msg.GetFinished()
	if fin == nil {
		return
	}
	tk := w.running[fin.GetTaskId()]
	if tk == nil {
		return // lost and requeued meanwhile; the other attempt counts
	}
	delete(w.running, tk.ID)
	w.done++
	resp := &repb.ExecuteResponse{}
	if err := proto.Unmarshal(fin.GetExecuteResponse(), resp); err != nil {
		resp = failure(codes.Internal, "worker %s sent a malformed result: %v", w.name, err)
	}
	s.finishLocked(tk, resp)
	s.afterSlotFreedLocked(w)
}

// afterSlotFreedLocked gives w more work, or lets a drained worker go.
func (s *Scheduler) afterSlotFreedLocked(w *worker) {
	if w.state == workerpb.WorkerState_DRAINING && len(w.running) == 0 {
		if !w.leaving {
			w.leaving = true
			w.sendLocked(s, &workerpb.SchedulerMessage{Kind: &workerpb.SchedulerMessage_Goodbye{Goodbye: &workerpb.Goodbye{Reason: "drained"}}})
		}
		return
	}
	s.dispatchLocked(s.pools[w.platform])
}

func (s *Scheduler) lose(w *worker, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loseLocked(w, reason)
}

// loseLocked ends w's session and queues its tasks again, or fails those
// that have been attempted MaxAttempts times.
func (s *Scheduler) loseLocked(w *worker, reason string) {
	if s.workers[w.name] != w {
		return // already gone
	}
	delete(s.workers, w.name)
	p := s.pools[w.platform]
	delete(p.workers, w.name)
	close(w.gone)
	// No longer ACTIVE: a dispatch loop still iterating over this worker
	// gives it nothing more.
	w.state = workerpb.WorkerState_WORKER_STATE_UNSPECIFIED
	if len(w.running) == 0 {
		s.log.Info("worker left", "worker", w.name, "reason", reason)
	} else {
		s.log.Warn("worker lost with actions running; queueing them again", "worker", w.name, "reason", reason, "running", len(w.running))
	}
	for _, tk := range w.running {
		tk.worker = nil
		switch {
		case tk.cancelled:
			s.finishLocked(tk, failure(codes.Canceled, "cancelled; worker %s went away", w.name))
		case tk.attempt >= s.opts.MaxAttempts:
			s.finishLocked(tk, failure(codes.Unavailable, "worker %s went away (%s) while running the action, attempt %d of %d", w.name, reason, tk.attempt, s.opts.MaxAttempts))
		default:
			p.push(tk, true)
			tk.events <- Event{Stage: Queued, At: time.Now()}
			s.log.Info("action queued again", "task", tk.ID, "action", tk.Key.Action.String(), "attempt", tk.attempt+1)
		}
	}
	clear(w.running)
	s.dispatchLocked(p)
}
