// Package badgerstore is mound's embedded default storage: a cas.BlobStore
// and cas.ActionCache in one local data directory, with no setup.
//
// Layout of the directory:
//
//	badger/       Badger database: blob metadata, AC entries
//	packs/        small blobs, appended one after another to pack files
//	blobs/xx/...  large blobs, one file each (raw, or .zst when kept compressed)
//	tmp/          uploads in progress; emptied on open
//
// A blob is visible only once its metadata key is committed, which happens
// after its content was verified (digest.Verifier) and made durable
// (fdatasync of its pack for small blobs; fsync of the file and its
// directory for large ones). So a crash mid-upload leaves at most a
// temporary file, which Open deletes, an orphaned blob file, which Open
// also deletes, or dead bytes in a pack, which compaction reclaims.
//
// Small blobs (up to Options.InlineLimit) are appended to pack files, so
// many concurrent or batched uploads share one fdatasync (group commit);
// their metadata is one Badger commit per batch. Large blobs stream to a
// file, fdatasynced every few MiB while they arrive (see syncer), and are
// never held whole in memory.
//
// All blobs are indexed in memory (digest, size, stored size, LRU position),
// rebuilt from Badger on open. FindMissing is answered from the index. When
// Options.MaxSize is set, the least recently used blobs are evicted to make
// room before a new blob is written. Access times are persisted lazily, so
// after a restart the LRU order is approximately what it was.
package badgerstore
