// Package badgerstore is mound's embedded default storage: a cas.BlobStore
// and cas.ActionCache in one local data directory, with no setup.
//
// Layout of the directory:
//
//	badger/       Badger database: blob metadata, small blobs, AC entries
//	blobs/xx/...  large blobs, one file each (raw, or .zst when kept compressed)
//	tmp/          uploads in progress; emptied on open
//
// A blob is visible only once its metadata key is committed, which happens
// after its content was verified (digest.Verifier) and made durable (Badger's
// synced commit for small blobs; fsync of the file and its directory for
// large ones). So a crash mid-upload leaves at most a temporary file, which
// Open deletes, or an orphaned blob file, which Open also deletes.
//
// Small blobs (up to Options.InlineLimit) are written through Badger, so many
// concurrent or batched uploads share one fsync (group commit). Large blobs
// stream to a file and are never held whole in memory.
//
// All blobs are indexed in memory (digest, size, stored size, LRU position),
// rebuilt from Badger on open. FindMissing is answered from the index. When
// Options.MaxSize is set, the least recently used blobs are evicted to make
// room before a new blob is written. Access times are persisted lazily, so
// after a restart the LRU order is approximately what it was.
package badgerstore
