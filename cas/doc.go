// Package cas defines mound's storage: the content-addressed store (CAS) of
// blobs and the action cache (AC), as small interfaces with decorators around
// them, and the REAPI gRPC services that expose them (see package
// cas/service).
//
// Data flow: a gRPC request (ByteStream, CAS, ActionCache) is decoded and
// validated in cas/service, which calls these interfaces. The embedded
// implementation behind them is cas/badgerstore (Badger in the data directory,
// large blobs as files beside it); cas/memstore is the in-memory one used by
// tests. Every implementation verifies incoming bytes with digest.Verifier
// before a blob becomes visible, so readers trust what a store returns.
//
// Decorators add behaviour without flags: CompleteActionCache turns an AC
// entry whose referenced blobs are gone into a miss, and touches those blobs
// so that eviction keeps what recent AC entries reference.
package cas
