package scheduler

import (
	"container/list"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mound-build/mound/scheduler/workerpb"
)

// ErrNoWorkers is returned (wrapped) by Submit for a platform that no worker
// offers: the action would wait forever.
var ErrNoWorkers = errors.New("no worker offers this platform")

// Options configure a Scheduler; the zero value is usable.
type Options struct {
	// HeartbeatInterval is how often workers heartbeat; one silent for
	// three intervals is lost. 0 means 5s.
	HeartbeatInterval time.Duration
	// MaxAttempts bounds how often a task is started on a worker that then
	// disappears. 0 means 3.
	MaxAttempts int
	// StartupGrace is how long after start tasks for a platform no worker
	// has offered yet wait for one, while workers (re)connect. 0 means 30s.
	StartupGrace time.Duration
	// Logger receives operational messages; nil means slog.Default().
	Logger *slog.Logger
}

// Scheduler queues tasks and hands them to connected workers. Safe for
// concurrent use. Create with New; Close stops its background loop.
type Scheduler struct {
	workerpb.UnimplementedSchedulerServer
	workerpb.UnimplementedAdminServer
	opts    Options
	log     *slog.Logger
	started time.Time

	mu      sync.Mutex
	pools   map[Platform]*pool // guarded by mu
	tasks   map[string]*task   // tasks queued or running, by ID; guarded by mu
	workers map[string]*worker // connected workers by name; guarded by mu
	// ending is set by EndSessions: no worker may connect any more.
	// Guarded by mu.
	ending bool

	stop chan struct{}
	wg   sync.WaitGroup
}

// task is a Task with its scheduling state, guarded by Scheduler.mu.
type task struct {
	*Task
	invocation string
	events     chan Event
	attempt    int
	queuedAt   time.Time
	worker     *worker       // set while running
	elem       *list.Element // set while queued
	cancelled  bool
}

// New returns a scheduler and starts its background loop.
func New(opts Options) *Scheduler {
	if opts.HeartbeatInterval == 0 {
		opts.HeartbeatInterval = 5 * time.Second
	}
	if opts.MaxAttempts == 0 {
		opts.MaxAttempts = 3
	}
	if opts.StartupGrace == 0 {
		opts.StartupGrace = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Scheduler{
		opts: opts, log: opts.Logger, started: time.Now(),
		pools: map[Platform]*pool{}, tasks: map[string]*task{}, workers: map[string]*worker{},
		stop: make(chan struct{}),
	}
	s.wg.Add(1)
	go s.watch()
	return s
}

// Close stops the background loop. Connected workers stay connected until
// the gRPC server stops.
func (s *Scheduler) Close() {
	close(s.stop)
	s.wg.Wait()
}

// EndSessions ends every worker session and refuses new ones, as the
// server stops: a session is a stream that never ends on its own, and a
// graceful stop of the gRPC server would wait for it. Workers reconnect to
// the next server; the tasks they ran are queued again here, for nobody.
func (s *Scheduler) EndSessions() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ending = true
	for _, w := range s.workers {
		s.loseLocked(w, "the server is stopping")
	}
}

// Submit queues t. Its events arrive on the returned channel, which is never
// closed; Finished is the last event. It fails at once (ErrNoWorkers) when
// no worker has ever offered t's platform and the startup grace is over.
func (s *Scheduler) Submit(t *Task) (<-chan Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.tasks[t.ID]; dup {
		return nil, fmt.Errorf("task %s is already queued", t.ID)
	}
	p := s.pools[t.Platform]
	if p == nil || !p.served {
		if time.Since(s.started) > s.opts.StartupGrace {
			return nil, s.noWorkersLocked(t.Platform)
		}
		if p == nil {
			p = newPool(t.Platform)
			s.pools[t.Platform] = p
		}
	}
	tk := &task{
		Task:       t,
		invocation: t.Metadata.GetToolInvocationId(),
		// Every attempt emits at most Queued and Executing, plus the final
		// Finished: the buffer holds all, so sends never block.
		events:   make(chan Event, 2*s.opts.MaxAttempts+2),
		queuedAt: time.Now(),
	}
	s.tasks[t.ID] = tk
	p.push(tk, false)
	tk.events <- Event{Stage: Queued, At: tk.queuedAt}
	s.dispatchLocked(p)
	return tk.events, nil
}

func (s *Scheduler) noWorkersLocked(p Platform) error {
	var known []string
	for q, pool := range s.pools {
		if pool.served {
			known = append(known, q.String())
		}
	}
	slices.Sort(known)
	return fmt.Errorf("%w: platform %v; workers offer %v", ErrNoWorkers, p, known)
}

// Cancel stops a task: a queued one finishes as CANCELLED at once, a
// running one is cancelled on its worker, which reports how it ended.
func (s *Scheduler) Cancel(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	tk := s.tasks[id]
	if tk == nil || tk.cancelled {
		return
	}
	tk.cancelled = true
	if tk.worker == nil {
		s.pools[tk.Platform].remove(tk)
		s.finishLocked(tk, failure(codes.Canceled, "cancelled before it ran"))
		return
	}
	tk.worker.sendLocked(s, &workerpb.SchedulerMessage{Kind: &workerpb.SchedulerMessage_Cancel{Cancel: &workerpb.Cancel{TaskId: id}}})
}

// dispatchLocked gives queued tasks of p to its workers' free slots.
func (s *Scheduler) dispatchLocked(p *pool) {
	for _, w := range p.workers {
		for w.state == workerpb.WorkerState_ACTIVE && !w.leaving && len(w.running) < w.jobs && p.queued > 0 {
			s.assignLocked(w, p.pop())
		}
	}
}

func (s *Scheduler) assignLocked(w *worker, tk *task) {
	tk.worker = w
	tk.attempt++
	w.running[tk.ID] = tk
	msg := &workerpb.Task{
		TaskId: tk.ID, InstanceName: tk.Key.Instance, ActionDigest: tk.Key.Action.String(),
		Action: tk.Action, Command: tk.Command, Attempt: int32(tk.attempt),
		Timeout: durationpb.New(tk.Timeout), QueuedAt: timestamppb.New(tk.queuedAt),
	}
	if tk.Metadata != nil {
		msg.RequestMetadata, _ = proto.Marshal(tk.Metadata)
	}
	tk.events <- Event{Stage: Executing, Worker: w.name, At: time.Now()}
	w.sendLocked(s, &workerpb.SchedulerMessage{Kind: &workerpb.SchedulerMessage_Task{Task: msg}})
}

// finishLocked ends a task with resp.
func (s *Scheduler) finishLocked(tk *task, resp *repb.ExecuteResponse) {
	delete(s.tasks, tk.ID)
	tk.events <- Event{Stage: Finished, At: time.Now(), Response: resp}
}

// failure is an ExecuteResponse for a task that could not run.
func failure(c codes.Code, format string, args ...any) *repb.ExecuteResponse {
	return &repb.ExecuteResponse{Status: &spb.Status{Code: int32(c), Message: fmt.Sprintf(format, args...)}}
}

// watch loses silent workers and fails tasks that wait for a platform no
// worker offered during the startup grace.
func (s *Scheduler) watch() {
	defer s.wg.Done()
	tick := time.NewTicker(s.opts.HeartbeatInterval)
	defer tick.Stop()
	graceOver := time.After(s.opts.StartupGrace)
	for {
		select {
		case <-s.stop:
			return
		case <-graceOver:
			s.mu.Lock()
			for plat, p := range s.pools {
				if p.served {
					continue
				}
				err := s.noWorkersLocked(plat)
				for _, tk := range p.all() {
					p.remove(tk)
					s.finishLocked(tk, failure(codes.FailedPrecondition, "%v", err))
				}
				delete(s.pools, plat)
			}
			s.mu.Unlock()
		case now := <-tick.C:
			s.mu.Lock()
			for _, w := range s.workers {
				if now.Sub(w.lastSeen) > 3*s.opts.HeartbeatInterval {
					s.loseLocked(w, "no heartbeat for "+now.Sub(w.lastSeen).Round(time.Second).String())
				}
			}
			s.mu.Unlock()
		}
	}
}
