package tree

import (
	"context"
	"fmt"
	"os"

	"golang.org/x/sync/errgroup"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
)

// Limits of transfers. Each bounds a fan-out or the memory it holds.
const (
	// smallFileBytes is the largest file read whole into memory and sent
	// or received in a batch; larger files are streamed from and to disk.
	// Most source files are smaller, and batching is what makes a tree of
	// many small files fast.
	smallFileBytes = 1 << 20

	// groupBytes is the content of one group of small blobs handed to
	// cas.PutBatch or read with cas.BatchGetter: a few of a server's batches,
	// so a remote store can pipeline them.
	groupBytes = 8 << 20

	// transferParallelism is how many groups or streamed files move at
	// once. With groupBytes per group it bounds memory at 32 MiB, and it
	// keeps a few requests in flight to hide network round trips.
	transferParallelism = 4

	// getParallelism is how many small blobs (Directory messages, files
	// of at most smallFileBytes) are read at once, one Get each, from a
	// getter without GetBatch: each is a round trip to a remote CAS, so
	// several hide each other's latency, and 16 bounds memory at 16 MiB
	// of file content.
	getParallelism = 16
)

// Store is what Upload needs of a CAS.
type Store interface {
	cas.BlobPutter
	cas.MissingFinder
}

// UploadStats describe an uploaded tree.
type UploadStats struct {
	// Root is the digest of the top Directory message.
	Root digest.Digest
	// Files, Dirs and Symlinks count the tree's entries (Dirs includes the
	// root); Bytes is the size of all files.
	Files, Dirs, Symlinks int
	Bytes                 int64
	// Blobs counts distinct blobs: file contents and Directory messages.
	Blobs int
	// Uploaded and UploadedBytes are the blobs the store lacked and got.
	Uploaded      int
	UploadedBytes int64
}

// Upload stores the directory tree at dir in s and returns its root digest
// with statistics. It hashes everything locally, asks s once which blobs it
// lacks, and sends only those: small files and Directory messages in groups
// through cas.PutBatch, large files streamed from disk, the root Directory
// last so that a root present in s means a complete tree. A file that
// changes while it is uploaded fails the upload (the store verifies it).
// Only regular files, directories and symlinks may be in dir; symlinks are
// stored as they are, never followed.
func Upload(ctx context.Context, s Store, dir string) (UploadStats, error) {
	l, err := scan(ctx, dir)
	if err != nil {
		return UploadStats{}, err
	}
	all := make([]digest.Digest, 0, len(l.files)+len(l.dirs))
	for d := range l.files {
		all = append(all, d)
	}
	for d := range l.dirs {
		all = append(all, d)
	}
	missing, err := s.FindMissing(ctx, all)
	if err != nil {
		return l.stats, err
	}
	var small, large, dirs []digest.Digest
	rootMissing := false
	for _, d := range missing {
		l.stats.Uploaded++
		l.stats.UploadedBytes += d.Size
		switch _, isFile := l.files[d]; {
		case d == l.root:
			rootMissing = true
		case isFile && d.Size > smallFileBytes:
			large = append(large, d)
		case isFile:
			small = append(small, d)
		default:
			dirs = append(dirs, d)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(transferParallelism)
	for _, d := range large {
		g.Go(func() error { return putFile(gctx, s, l.files[d], d) })
	}
	for _, group := range groups(small) {
		g.Go(func() error { return l.putGroup(gctx, s, group) })
	}
	if err := g.Wait(); err != nil {
		return l.stats, err
	}
	// Directory messages only once the files they name are stored.
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(transferParallelism)
	for _, group := range groups(dirs) {
		g.Go(func() error { return l.putGroup(gctx, s, group) })
	}
	if err := g.Wait(); err != nil {
		return l.stats, err
	}
	if rootMissing {
		if err := l.putGroup(ctx, s, []digest.Digest{l.root}); err != nil {
			return l.stats, err
		}
	}
	return l.stats, nil
}

// groups splits ds into groups of at most groupBytes of content (a larger
// blob gets a group of its own).
func groups(ds []digest.Digest) [][]digest.Digest {
	var out [][]digest.Digest
	var cur []digest.Digest
	var size int64
	for _, d := range ds {
		if len(cur) > 0 && size+d.Size > groupBytes {
			out = append(out, cur)
			cur, size = nil, 0
		}
		cur = append(cur, d)
		size += d.Size
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// putGroup reads the small files and Directory messages ds and stores them
// with one cas.PutBatch.
func (l *local) putGroup(ctx context.Context, s Store, ds []digest.Digest) error {
	blobs := make([]cas.Blob, len(ds))
	for i, d := range ds {
		blobs[i].Digest = d
		if b, ok := l.dirs[d]; ok {
			blobs[i].Data = b
			continue
		}
		b, err := os.ReadFile(l.files[d])
		if err != nil {
			return err
		}
		blobs[i].Data = b
	}
	for i, err := range cas.PutBatch(ctx, s, blobs) {
		if err == nil {
			continue
		}
		if path, ok := l.files[ds[i]]; ok {
			return fmt.Errorf("upload %s: %w", path, err)
		}
		return fmt.Errorf("upload Directory message %v: %w", ds[i], err)
	}
	return nil
}

// putFile streams the file at path, whose content was hashed as d, to s.
func putFile(ctx context.Context, s cas.BlobPutter, path string, d digest.Digest) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := s.Put(ctx, d, f); err != nil {
		return fmt.Errorf("upload %s: %w", path, err)
	}
	return nil
}

// UploadFile stores the regular file at path in s, unless s has it, and
// returns its digest. The content is streamed from disk.
func UploadFile(ctx context.Context, s Store, path string) (digest.Digest, error) {
	f, err := os.Open(path)
	if err != nil {
		return digest.Digest{}, err
	}
	defer f.Close()
	if info, err := f.Stat(); err != nil {
		return digest.Digest{}, err
	} else if !info.Mode().IsRegular() {
		return digest.Digest{}, fmt.Errorf("%s is not a regular file", path)
	}
	d, err := digest.OfReader(f)
	if err != nil {
		return digest.Digest{}, fmt.Errorf("hash %s: %w", path, err)
	}
	missing, err := s.FindMissing(ctx, []digest.Digest{d})
	if err != nil || len(missing) == 0 {
		return d, err
	}
	if _, err := f.Seek(0, 0); err != nil {
		return digest.Digest{}, err
	}
	if err := s.Put(ctx, d, f); err != nil {
		return digest.Digest{}, fmt.Errorf("upload %s: %w", path, err)
	}
	return d, nil
}
