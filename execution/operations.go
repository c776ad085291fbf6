package execution

import (
	"sync"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/mound-build/mound/cas"
)

// run is the shared state of one execution of an action. Every operation
// name that joined it (the first Execute and identical ones merged into it)
// points at the same run.
type run struct {
	key      cas.ActionKey
	taskID   string
	metadata *repb.RequestMetadata

	mu       sync.Mutex
	stage    repb.ExecutionStage_Value // guarded by mu
	worker   string                    // guarded by mu
	response *repb.ExecuteResponse     // set when done; guarded by mu
	changed  chan struct{}             // closed and replaced on every change; guarded by mu
	waiters  int                       // streams following the run; guarded by mu
	names    []string                  // operation names sharing the run; guarded by mu
	// joined is the run in flight this one merged into (operations.join):
	// streams following this run follow that one from then on. Guarded by
	// mu.
	joined *run
}

func newRun(key cas.ActionKey, taskID string, md *repb.RequestMetadata) *run {
	return &run{key: key, taskID: taskID, metadata: md, stage: repb.ExecutionStage_CACHE_CHECK, changed: make(chan struct{})}
}

// set moves the run to stage, or to done when resp is not nil.
func (r *run) set(stage repb.ExecutionStage_Value, worker string, resp *repb.ExecuteResponse) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.response != nil {
		return
	}
	r.stage, r.response = stage, resp
	if worker != "" {
		r.worker = worker
	}
	close(r.changed)
	r.changed = make(chan struct{})
}

// joinedRun returns the run r merged into, or nil.
func (r *run) joinedRun() *run {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.joined
}

// snapshot returns the run as the Operation named name, whether it is done,
// and a channel closed at the next change.
func (r *run) snapshot(name string) (*longrunningpb.Operation, bool, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	md, _ := anypb.New(&repb.ExecuteOperationMetadata{Stage: r.stage, ActionDigest: r.key.Action.Proto()})
	op := &longrunningpb.Operation{Name: name, Metadata: md, Done: r.response != nil}
	if r.response != nil {
		resp, _ := anypb.New(r.response)
		op.Result = &longrunningpb.Operation_Response{Response: resp}
	}
	return op, op.Done, r.changed
}

// operations maps operation names to runs, and actions in flight to their
// run so that identical Executes merge.
type operations struct {
	mu       sync.Mutex
	byName   map[string]*run        // guarded by mu
	inFlight map[cas.ActionKey]*run // runs not done that may be joined; guarded by mu
}

func newOperations() *operations {
	return &operations{byName: map[string]*run{}, inFlight: map[cas.ActionKey]*run{}}
}

// add names r.
func (o *operations) add(name string, r *run) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.byName[name] = r
	r.mu.Lock()
	r.names = append(r.names, name)
	r.mu.Unlock()
}

// join returns the mergeable run of key in flight, named also name, and
// sends r's followers to it; or returns nil after making r that run.
func (o *operations) join(key cas.ActionKey, name string, r *run) *run {
	o.mu.Lock()
	defer o.mu.Unlock()
	if cur := o.inFlight[key]; cur != nil {
		o.byName[name] = cur
		cur.mu.Lock()
		cur.names = append(cur.names, name)
		cur.mu.Unlock()
		// A client that lost its stream before the join follows r, the
		// run its WaitExecution found: wake it to follow cur instead.
		r.mu.Lock()
		r.joined = cur
		close(r.changed)
		r.changed = make(chan struct{})
		r.mu.Unlock()
		return cur
	}
	o.inFlight[key] = r
	return nil
}

func (o *operations) get(name string) *run {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.byName[name]
}

// finished stops r from being joined and forgets its names after retention,
// the time a client has to come back with WaitExecution.
func (o *operations) finished(r *run, retention time.Duration) {
	o.mu.Lock()
	if o.inFlight[r.key] == r {
		delete(o.inFlight, r.key)
	}
	o.mu.Unlock()
	time.AfterFunc(retention, func() {
		o.mu.Lock()
		defer o.mu.Unlock()
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, n := range r.names {
			if o.byName[n] == r {
				delete(o.byName, n)
			}
		}
	})
}
