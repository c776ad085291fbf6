// Package bench measures a running REAPI server against a floor: a trivial
// in-memory REAPI server of this package's own (Floor), started in-process
// on a loopback TCP listener, that does nothing but keep blobs in a map. The
// floor shows what gRPC alone allows on the machine, so each figure of the
// server under test is read as a fraction of the floor's figure rather than
// as an absolute number that depends on the hardware.
//
// Run drives the same workloads against both servers, in rounds that
// alternate between them so that both see the same disturbances from the
// rest of the machine (rates keep each server's best round; latencies pool
// the calls of all rounds):
//
//   - FindMissingBlobs of many digests, half of them present: latency of a
//     call (p50, p99).
//   - BatchUpdateBlobs then BatchReadBlobs of many small random blobs, in
//     batches that fit the server's max_batch_total_size_bytes and gRPC's
//     default 4 MiB message limit: blobs/s.
//   - ByteStream Write then Read of large random blobs: MB/s.
//   - The same through compressed-blobs/zstd with compressible data,
//     compressed by the client before timing starts and decompressed while
//     reading: MB/s of uncompressed bytes.
//   - ActionCache UpdateActionResult then GetActionResult of results that
//     reference blobs present in the CAS: ops/s.
//   - exec, on the target only, since the floor does not execute: a no-op
//     action (/bin/true, empty input root) executed with
//     skip_cache_lookup on a warm worker, from the Execute call until the
//     done operation; then GetActionResult of that cached action, and
//     Execute answered with cached_result: latency of a call (p50, p99) at
//     concurrency 1, judged by absolute aims. A breakdown of the
//     executions' median phases, from their ExecutedActionMetadata, comes
//     as a note. The target needs a connected worker (scripts/bench.sh
//     starts one); a target that does not advertise exec_enabled has the
//     workload skipped with a note.
//
// Each workload but exec runs at every concurrency of Options.Concurrency
// (requests in flight). Every run generates its blob content afresh from a random
// seed, and fresh content for each server and concurrency, so no server
// can answer from a previous run or a previous measurement. Everything read
// back is compared with what was written: a server that answers with wrong
// bytes or wrong results makes Run fail with ErrWrongAnswer, never report a
// figure.
//
// Run also measures two single-core figures of the client machine: SHA-256
// and zstd compression speed; and, given a directory in the target's file
// system (Options.DiskDir), the disk's durable write rate (Disk), which
// bounds every server that answers an upload only once it is durable. The Report prints every figure beside the
// aims it is judged by (see Aims). MB is 10^6 bytes throughout.
package bench
