// Package inputs lays out an action's input root and prepares where its
// outputs go, before the action runs in its sandbox.
//
// An InputTree turns the digest of a REAPI input root into a directory.
// HardlinkTree (what Materialize uses) does it eagerly, on package
// cas/tree, which owns reading and checking trees and laying them out:
//
//  1. tree.Fetch reads the Directory messages from Source.Directories level
//     by level (many at once through GetBatch when the getter has it), and
//     checks the whole tree before anything is written: every name is a
//     single path component (not empty, ".", "..", no "/" or NUL), unique
//     in its directory; every digest is valid; the tree is within depth and
//     size limits (a small DAG can name billions of paths). Its errors wrap
//     ErrInvalid, which is tree.ErrInvalid.
//  2. tree.Tree.Create makes the directories (0755, owned by the worker),
//     then hands the files to this package, which places each by
//     hardlinking the blob cache's file for its content and mode
//     (Source.Files, a blobcache.Cache in the worker), copying it when the
//     cache is on another file system. Each distinct content and mode is
//     fetched once, many at a time within fetchParallelism.
//  3. Create makes the symlinks last, with their targets as given (absolute
//     ones included), so that nothing is ever written through a link.
//
// Since the cache's files are read-only and owned by the worker, an action
// running as an unprivileged user can read its inputs but not change the
// cache through them. PrepareOutputs then creates the directories leading
// up to each declared output, owned by that user, so the action can write
// its outputs there.
//
// A lazy implementation of InputTree backed by FUSE (package fuseinput) is
// meant to sit beside HardlinkTree.
package inputs
