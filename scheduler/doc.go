// Package scheduler will match queued actions to worker pools by platform
// properties. Workers connect out to it over one long-lived gRPC stream,
// announce platform and capacity, take work and heartbeat; they can be
// paused, drained and replaced without losing work.
package scheduler
