// Package tree moves directories in and out of a CAS as REAPI Directory
// trees: every directory becomes a Directory message (files with their
// digest and executable bit, subdirectories by the digest of their own
// message, symlinks with their target, each list sorted by name), stored as
// a blob like any file.
//
// Upload walks a local directory, hashes every file and serializes every
// Directory deterministically, asks the store once which of those blobs it
// lacks, and sends only those: small ones in batches (cas.PutBatch), large
// files streamed from disk. Several transfers run at once, within named
// limits.
//
// Download goes the other way in two steps. Fetch reads the Directory
// messages from the root down and checks the whole tree before anything is
// written: names that could escape the target (empty, ".", "..", or with a
// "/" or NUL), duplicate names, bad digests, cycles and absurd depths and
// sizes (MaxDepth, MaxEntries) are refused, with errors wrapping
// ErrInvalid. Tree.Create then lays the tree out under a new or empty
// directory: the directories, then the files through a PlaceFunc that gets
// each distinct content once with every path holding it, and the symlinks
// last, so no write ever goes through a link. Tree.Write is Create with
// files read from the CAS (0755 or 0644 by the executable bit); the
// worker's input trees (workerd/inputs) use Fetch and Create with a
// PlaceFunc that hardlinks files from its blob cache instead.
//
// Content is verified where it enters the process: a cas.BlobGetter such as
// remote.Client hashes what it receives before handing it over, so this
// package checks sizes and trusts the bytes.
package tree
