package tree

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sync/errgroup"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
)

// Modes of the files Write and DownloadFile create, whatever the umask.
const (
	execMode fs.FileMode = 0o755
	fileMode fs.FileMode = 0o644
)

// Download fetches the tree whose root Directory is root from g and writes
// it at dir: Fetch, then Tree.Write.
func Download(ctx context.Context, g cas.BlobGetter, root digest.Digest, dir string) error {
	t, err := Fetch(ctx, g, root)
	if err != nil {
		return err
	}
	return t.Write(ctx, g, dir)
}

// target is a file to create with some content.
type target struct {
	path string
	exec bool
}

// Write creates t's content under dir with Create, reading file contents
// from g: files are 0755 when executable and 0644 otherwise, each distinct
// content read once (small ones in groups through g's GetBatch when it has
// one, large ones streamed to disk). dir must be absent (its parent
// present) or an empty directory; on failure everything Write created is
// removed.
func (t *Tree) Write(ctx context.Context, g cas.BlobGetter, dir string) error {
	return t.Create(ctx, dir, func(ctx context.Context, dir string, files []Contents) error {
		return writeFiles(ctx, g, dir, files)
	})
}

// writeFiles is Write's PlaceFunc.
func writeFiles(ctx context.Context, g cas.BlobGetter, dir string, files []Contents) error {
	targets := make(map[digest.Digest][]target, len(files))
	var small, large []digest.Digest
	for _, c := range files {
		for _, f := range c.Files {
			targets[c.Digest] = append(targets[c.Digest], target{path: filepath.Join(dir, f.Path), exec: f.Executable})
		}
		switch {
		case c.Digest.IsEmpty():
			for _, tg := range targets[c.Digest] {
				if err := writeFile(tg, nil, 0); err != nil {
					return err
				}
			}
		case c.Digest.Size > smallFileBytes:
			large = append(large, c.Digest)
		default:
			small = append(small, c.Digest)
		}
	}
	name := func(d digest.Digest) string { return fmt.Sprintf("file %s", targets[d][0].path) }
	err := eachBlob(ctx, g, small, name, func(i int, data []byte) error {
		for _, tg := range targets[small[i]] {
			if err := writeFile(tg, bytes.NewReader(data), int64(len(data))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(transferParallelism)
	for _, d := range large {
		eg.Go(func() error { return writeLarge(ectx, g, d, targets[d]) })
	}
	return eg.Wait()
}

// writeLarge streams the blob d from g into the first of targets and
// copies it to the others.
func writeLarge(ctx context.Context, g cas.BlobGetter, d digest.Digest, targets []target) error {
	r, err := g.Get(ctx, d, 0)
	if err != nil {
		return fmt.Errorf("file %s: %w", targets[0].path, err)
	}
	err = writeFile(targets[0], r, d.Size)
	r.Close()
	if err != nil {
		return err
	}
	for _, tg := range targets[1:] {
		src, err := os.Open(targets[0].path)
		if err != nil {
			return err
		}
		err = writeFile(tg, src, d.Size)
		src.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// writeFile creates tg, which must not exist, with size bytes from r.
func writeFile(tg target, r io.Reader, size int64) error {
	f, err := os.OpenFile(tg.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	mode := fileMode
	if tg.exec {
		mode = execMode
	}
	err = copyExactly(f, r, size)
	if err == nil {
		err = f.Chmod(mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("file %s: %w", tg.path, err)
	}
	return nil
}

// copyExactly copies r to w and checks that r held size bytes.
func copyExactly(w io.Writer, r io.Reader, size int64) error {
	if r == nil {
		return nil
	}
	n, err := io.Copy(w, r)
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("%w: got %d bytes, digest says %d", digest.ErrMismatch, n, size)
	}
	return nil
}

// DownloadFile writes the blob d from g to path with mode, replacing what
// is there: the content goes to a temporary file in the same directory,
// which is synced and renamed over path once complete, so path never holds
// a partial file.
func DownloadFile(ctx context.Context, g cas.BlobGetter, d digest.Digest, path string, mode fs.FileMode) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".download-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	r, err := g.Get(ctx, d, 0)
	if err != nil {
		return err
	}
	err = copyExactly(f, r, d.Size)
	r.Close()
	if err != nil {
		return fmt.Errorf("blob %v: %w", d, err)
	}
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
