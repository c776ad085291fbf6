package scheduler

import (
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/mound-build/mound/cas"
)

// Task is one action to run on a worker.
type Task struct {
	// ID is unique among tasks in flight (the operation name).
	ID       string
	Key      cas.ActionKey
	Platform Platform
	// Action and Command are the serialized REAPI messages, already read
	// from the CAS and checked.
	Action, Command []byte
	Timeout         time.Duration
	// Metadata is what the client sent; InvocationID from it orders tasks
	// fairly between builds.
	Metadata *repb.RequestMetadata
}

// Stage of a task, as Events report it.
type Stage int

const (
	// Queued: waiting for a worker (again, after a lost worker).
	Queued Stage = iota
	// Executing: a worker took the task.
	Executing
	// Finished: the task ended; Event.Response holds the result.
	Finished
)

// Event is a change of a task's stage.
type Event struct {
	Stage  Stage
	Worker string
	At     time.Time
	// Response is set for Finished: the worker's ExecuteResponse, or one
	// whose status says why the task could not run.
	Response *repb.ExecuteResponse
}
