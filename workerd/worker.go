package workerd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mound-build/mound/scheduler/workerpb"
)

// errGoodbye ends Run: the scheduler drained this worker.
var errGoodbye = errors.New("drained by the scheduler")

// Worker is the worker daemon: it keeps a session with the scheduler and
// runs the tasks it is given. Create with New, run with Run.
type Worker struct {
	opts   Options
	log    *slog.Logger
	runner *runner
}

// New prepares the worker's directory (removing what a crash left behind)
// and its local blob cache.
func New(opts Options) (*Worker, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	r, err := newRunner(opts)
	if err != nil {
		return nil, err
	}
	return &Worker{opts: opts, log: opts.Logger, runner: r}, nil
}

// Run keeps a session with the scheduler until ctx ends or the scheduler
// drains the worker, reconnecting with backoff when the connection breaks.
// Tasks running when a session breaks are cancelled: the scheduler queues
// them again.
func (w *Worker) Run(ctx context.Context) error {
	defer w.runner.close()
	backoff := 100 * time.Millisecond
	for {
		start := time.Now()
		err := w.session(ctx)
		if errors.Is(err, errGoodbye) {
			w.log.Info("drained; leaving")
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) > time.Minute {
			backoff = 100 * time.Millisecond
		}
		w.log.Warn("session with the scheduler ended; reconnecting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff + rand.N(backoff/2)):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// session is one connection to the scheduler.
func (w *Worker) session(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := workerpb.NewSchedulerClient(w.opts.Conn).Connect(ctx, grpc.WaitForReady(true))
	if err != nil {
		return err
	}
	hello := &workerpb.Hello{Name: w.opts.Name, Platform: w.opts.Platform, Jobs: int32(w.opts.Jobs), Version: Version}
	if err := stream.Send(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Hello{Hello: hello}}); err != nil {
		return err
	}
	welcome, err := stream.Recv()
	if err != nil {
		return err
	}
	if welcome.GetWelcome() == nil {
		return fmt.Errorf("scheduler answered Hello with %v", welcome)
	}
	w.log.Info("connected to the scheduler", "name", w.opts.Name, "jobs", w.opts.Jobs)
	interval := welcome.GetWelcome().GetHeartbeatInterval().AsDuration()
	if interval <= 0 {
		interval = 5 * time.Second
	}

	// One goroutine sends, so that task goroutines and heartbeats never
	// write to the stream at once.
	out := make(chan *workerpb.WorkerMessage, 2*w.opts.Jobs+4)
	var tasks sync.WaitGroup
	running := &runningTasks{m: map[string]context.CancelFunc{}}
	defer func() {
		running.cancelAll()
		tasks.Wait()
	}()
	go func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			var msg *workerpb.WorkerMessage
			select {
			case <-ctx.Done():
				return
			case msg = <-out:
			case <-tick.C:
				msg = &workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Heartbeat{Heartbeat: &workerpb.Heartbeat{Running: running.ids()}}}
			}
			if err := stream.Send(msg); err != nil {
				cancel() // Recv fails next and ends the session
				return
			}
		}
	}()
	for {
		msg, err := stream.Recv()
		if err != nil {
			if err == io.EOF {
				err = errors.New("scheduler closed the session")
			}
			return err
		}
		switch k := msg.GetKind().(type) {
		case *workerpb.SchedulerMessage_Task:
			task := k.Task
			tctx, tcancel := context.WithCancel(ctx)
			running.add(task.GetTaskId(), tcancel)
			tasks.Add(1)
			go func() {
				defer tasks.Done()
				defer running.remove(task.GetTaskId())
				defer tcancel()
				w.send(ctx, out, &workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Started{
					Started: &workerpb.TaskStarted{TaskId: task.GetTaskId(), At: timestamppb.Now()},
				}})
				resp := w.runner.run(tctx, task)
				b, err := proto.Marshal(resp)
				if err != nil {
					w.log.Error("marshal result", "task", task.GetTaskId(), "err", err)
					return
				}
				w.send(ctx, out, &workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Finished{
					Finished: &workerpb.TaskFinished{TaskId: task.GetTaskId(), ExecuteResponse: b},
				}})
			}()
		case *workerpb.SchedulerMessage_Cancel:
			running.cancel(k.Cancel.GetTaskId())
		case *workerpb.SchedulerMessage_Goodbye:
			stream.CloseSend()
			return errGoodbye
		}
	}
}

func (w *Worker) send(ctx context.Context, out chan<- *workerpb.WorkerMessage, msg *workerpb.WorkerMessage) {
	select {
	case out <- msg:
	case <-ctx.Done():
	}
}

// runningTasks maps task ids to the cancel functions of their contexts.
type runningTasks struct {
	mu sync.Mutex
	m  map[string]context.CancelFunc // guarded by mu
}

func (r *runningTasks) add(id string, c context.CancelFunc) {
	r.mu.Lock()
	r.m[id] = c
	r.mu.Unlock()
}

func (r *runningTasks) remove(id string) {
	r.mu.Lock()
	delete(r.m, id)
	r.mu.Unlock()
}

func (r *runningTasks) cancel(id string) {
	r.mu.Lock()
	if c := r.m[id]; c != nil {
		c()
	}
	r.mu.Unlock()
}

func (r *runningTasks) cancelAll() {
	r.mu.Lock()
	for _, c := range r.m {
		c()
	}
	r.mu.Unlock()
}

func (r *runningTasks) ids() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.m))
	for id := range r.m {
		out = append(out, id)
	}
	return out
}

// cleanDir removes every action directory left in dir by an earlier run
// that crashed.
func cleanDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return os.MkdirAll(dir, 0o755)
}
