// Package outputs turns what an action left in its input root into a REAPI
// ActionResult, storing the output blobs in the CAS.
//
// Data flow of Collect: the outputs the Command declares (package inputs,
// DeclaredOutputs: output_paths, or output_files and output_directories of
// older clients) are looked up inside the input root through a View: a
// directory on disk (DirView, which reads through an os.Root, so a symlink
// on the way that leaves the root is an error rather than a way to upload
// the worker's own files) or the worker's FUSE file system. A declared
// output that is absent is left out of the result: the client decides
// whether that is an error. Regular files become OutputFiles; directories
// are walked (symlinks in them become SymlinkNodes, never followed) and
// become Tree messages; symlinks become OutputSymlinks with their targets
// as they are.
//
// Every file is hashed once (digest.OfReader on the open file), several at
// once, unless the View knows its digest (KnownDigests: an input the action
// left unchanged). Then the store is asked once, with FindMissing, which of
// all the blobs (files, Directory messages, Trees) it lacks, and only those
// are sent: small ones read into memory and sent in groups through
// cas.PutBatch, large ones streamed from the open file with Put.
//
// Symlinks are reported for both generations of clients: in output_symlinks
// (REAPI v2.1) and in the deprecated output_file_symlinks or
// output_directory_symlinks, which Bazel 4 reads. Bazel accepts the same
// symlink in several of these fields when the targets agree.
package outputs
