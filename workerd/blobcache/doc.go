// Package blobcache is a worker's local cache of blobs on disk, in front of
// the remote CAS. Actions see their input files as hardlinks of the cache's
// files, so a blob used by many actions is fetched once and stored once.
//
// Data flow: Path(d, executable) answers with the name of a file holding
// d's content. On a miss the blob is read from Options.Remote, streamed
// through digest.Verifier into a temporary file in the cache directory,
// given its final mode and renamed into place; concurrent requests for the
// same blob wait for that one fetch, and a request for the blob's other mode
// copies the file once it is there rather than fetching it again. Every cache file is owned by the
// worker and read-only (0444, or 0555 for the executable variant): a
// hardlink shares its inode's mode and owner, so an action running as
// another user can read and execute its inputs but never change the
// cache's bytes. Because the mode belongs to the inode, the executable and
// the plain variant of one blob are two files.
//
// Eviction: the cache holds at most Options.MaxBytes of content (file
// system overhead not counted); past that the least recently used files
// are unlinked. Unlinking removes only the cache's name: hardlinks already
// made into action directories keep their inode and content. A path handed
// out by Path can therefore vanish before the caller links it; the caller
// asks again (package inputs does).
//
// Restart: the index lives in memory and is rebuilt by Open from the
// directory (files whose size or mode is wrong are removed, leftover
// temporary files too), ordered by modification time. Content is not
// re-hashed: it was verified before it got its name.
//
// Layout under Options.Dir: one directory per first byte of the hash
// ("00" to "ff") holding files named "<hash>-<size>" and "<hash>-<size>-x"
// (executable), and the temporary files "fetch-*" of fills in progress.
package blobcache
