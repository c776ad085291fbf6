package scheduler

import (
	"context"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mound-build/mound/scheduler/workerpb"
)

// ListWorkers implements workerpb.AdminServer.
func (s *Scheduler) ListWorkers(ctx context.Context, req *workerpb.ListWorkersRequest) (*workerpb.ListWorkersResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := &workerpb.ListWorkersResponse{}
	for _, w := range s.workers {
		resp.Workers = append(resp.Workers, w.infoLocked())
	}
	slices.SortFunc(resp.Workers, func(a, b *workerpb.WorkerInfo) int { return strings.Compare(a.Name, b.Name) })
	return resp, nil
}

// SetWorkerState implements workerpb.AdminServer: ACTIVE unpauses, PAUSED
// stops new work, DRAINING stops new work and lets the worker go once idle.
func (s *Scheduler) SetWorkerState(ctx context.Context, req *workerpb.SetWorkerStateRequest) (*workerpb.WorkerInfo, error) {
	switch req.GetState() {
	case workerpb.WorkerState_ACTIVE, workerpb.WorkerState_PAUSED, workerpb.WorkerState_DRAINING:
	default:
		return nil, status.Errorf(codes.InvalidArgument, "state must be ACTIVE, PAUSED or DRAINING, not %v", req.GetState())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.workers[req.GetName()]
	if w == nil {
		return nil, status.Errorf(codes.NotFound, "no connected worker is named %q", req.GetName())
	}
	if w.leaving && req.GetState() != workerpb.WorkerState_DRAINING {
		return nil, status.Errorf(codes.FailedPrecondition, "worker %q was drained and is leaving; it takes work again once it reconnects", w.name)
	}
	if w.state != req.GetState() {
		s.log.Info("worker state changed", "worker", w.name, "from", w.state.String(), "to", req.GetState().String())
		w.state = req.GetState()
		s.afterSlotFreedLocked(w)
	}
	return w.infoLocked(), nil
}

func (w *worker) infoLocked() *workerpb.WorkerInfo {
	info := &workerpb.WorkerInfo{
		Name: w.name, Jobs: int32(w.jobs), State: w.state, TasksDone: w.done,
		ConnectedAt: timestamppb.New(w.connectedAt), LastSeen: timestamppb.New(w.lastSeen),
	}
	for _, line := range strings.Split(string(w.platform), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			info.Platform = append(info.Platform, &workerpb.Property{Name: k, Value: v})
		}
	}
	for id := range w.running {
		info.Running = append(info.Running, id)
	}
	slices.Sort(info.Running)
	return info
}
