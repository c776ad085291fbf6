// Package scheduler matches queued actions to workers.
//
// Execution (package execution) submits a Task with the action's platform;
// the scheduler puts it in the queue of the pool of workers whose platform is
// exactly that one, and reports the task's progress as Events on a channel.
// Workers connect out to the scheduler over one long-lived gRPC stream
// (Connect, protocol in scheduler/workerpb): they announce platform and
// capacity, take tasks while they have free slots, heartbeat, and report
// results. A worker that disappears has its tasks queued again (a bounded
// number of times). Within a pool, concurrent builds are served round-robin
// by invocation id and each build's tasks in FIFO order.
//
// Operators pause, unpause and drain workers through the Admin service
// (bin/mound admin ...): paused and draining workers take no new tasks, and a
// drained worker is told to leave once idle, so it can be replaced without
// losing work.
//
// All state is in memory, behind the Scheduler's methods; a shared
// implementation (Redis queues) can take its place without changing
// package execution, which depends only on the Queue interface it defines.
package scheduler
