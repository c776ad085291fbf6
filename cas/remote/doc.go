// Package remote is a client of a REAPI server's storage: it implements the
// cas interfaces (BlobGetter, BlobPutter, MissingFinder, BatchPutter and
// ActionCache) over a gRPC connection, so that code written against package
// cas works the same on a local store and on a remote one. The cas command
// line and the worker daemon use it as their view of the server's CAS.
//
// Data flow: FindMissing becomes FindMissingBlobs requests of at most
// maxFindMissingDigests digests. Small blobs (within the server's
// max_batch_total_size_bytes, read once from GetCapabilities) travel in
// BatchUpdateBlobs and BatchReadBlobs requests packed under that limit;
// larger ones through ByteStream Write and Read in 1 MiB chunks.
//
// Verification: what the client sends is checked with digest.Verifier as it
// is read from the caller, so a mismatch is digest.ErrMismatch before the
// server sees a finished upload; what it receives is checked with
// digest.Verifier (digest.Reader for streams) before it is handed over as
// complete, so callers trust the bytes this package returns.
//
// Errors: a blob or action result the server does not have is an error
// wrapping cas.ErrNotFound; RESOURCE_EXHAUSTED wraps cas.ErrFull; other
// failures keep their gRPC status (status.Code works on them) and name the
// object and the server. Every method honours its context and is safe for
// concurrent use.
package remote
