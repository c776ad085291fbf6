// Package execution implements the REAPI Execution service: Execute and
// WaitExecution, as google.longrunning Operations.
//
// An Execute request flows like this: the action digest is looked up in the
// action cache (unless skip_cache_lookup), and a complete hit ends the
// operation with cached_result. Otherwise, an operation already running the
// same action is joined (unless the action is do_not_cache): identical
// actions in flight run once. Otherwise the Action, its Command and every
// Directory and file of its input tree are checked to be in the CAS; missing
// ones fail the request with FAILED_PRECONDITION listing every missing blob,
// so that the client uploads them and retries. The action then goes to the
// scheduler (the Queue interface), whose events move the operation through
// QUEUED and EXECUTING to COMPLETED. Successful results (exit code 0, not
// do_not_cache) are written to the action cache.
//
// Each operation keeps the action's RequestMetadata, worker and stage
// timestamps; operation names stay resolvable for WaitExecution for a while
// after they finish, so a client that lost its stream can come back.
package execution
