// Package execution will hold the REAPI Execution service: Execute and
// WaitExecution with long-running operations, action cache lookup before
// queueing, merging of identical actions in flight, and the stages
// CACHE_CHECK, QUEUED, EXECUTING and COMPLETED. It hands actions to package
// scheduler and records each action's request metadata and timestamps.
package execution
