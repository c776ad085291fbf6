package tree

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sync/errgroup"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
)

// Modes of what Write and DownloadFile create, whatever the umask.
const (
	dirMode  fs.FileMode = 0o755
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

// plan is what Write creates once the directories exist.
type plan struct {
	files map[digest.Digest][]target // by content
	order []digest.Digest            // keys of files, in tree order
	links [][2]string                // path, target
}

// Write creates t's content under dir, reading file contents from g. dir
// must be absent (its parent present) or an empty directory. Directories
// (mode 0755) are made first, then files (0755 when executable, 0644
// otherwise; each distinct content read once: small ones in groups through
// g's GetBatch when it has one, large ones streamed to disk), then the
// symlinks, so that no file is ever written through a link. Names were
// checked by Fetch, so nothing is written outside dir. On failure
// everything Write created is removed.
func (t *Tree) Write(ctx context.Context, g cas.BlobGetter, dir string) (err error) {
	created, err := prepare(dir)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			cleanup(dir, created)
		}
	}()
	p := &plan{files: map[digest.Digest][]target{}}
	if err := t.mkdirs(ctx, t.Root, dir, p); err != nil {
		return err
	}
	var small, large []digest.Digest
	for _, d := range p.order {
		switch {
		case d.IsEmpty():
			for _, tg := range p.files[d] {
				if err := writeFile(tg, nil, 0); err != nil {
					return err
				}
			}
		case d.Size > smallFileBytes:
			large = append(large, d)
		default:
			small = append(small, d)
		}
	}
	name := func(d digest.Digest) string { return fmt.Sprintf("file %s", p.files[d][0].path) }
	err = eachBlob(ctx, g, small, name, func(i int, data []byte) error {
		for _, tg := range p.files[small[i]] {
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
		eg.Go(func() error { return writeLarge(ectx, g, d, p.files[d]) })
	}
	if err := eg.Wait(); err != nil {
		return err
	}
	for _, l := range p.links {
		if err := os.Symlink(l[1], l[0]); err != nil {
			return err
		}
	}
	return nil
}

// mkdirs creates the subdirectories of the Directory d, which is at path,
// and records its files and symlinks in p.
func (t *Tree) mkdirs(ctx context.Context, d digest.Digest, path string, p *plan) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dir := t.dirs[d]
	for _, f := range dir.GetFiles() {
		fd, _ := digest.FromProto(f.GetDigest()) // checked by Fetch
		if _, ok := p.files[fd]; !ok {
			p.order = append(p.order, fd)
		}
		p.files[fd] = append(p.files[fd], target{path: filepath.Join(path, f.GetName()), exec: f.GetIsExecutable()})
	}
	for _, sub := range dir.GetDirectories() {
		sd, _ := digest.FromProto(sub.GetDigest())
		subPath := filepath.Join(path, sub.GetName())
		if err := os.Mkdir(subPath, dirMode); err != nil {
			return err
		}
		if err := os.Chmod(subPath, dirMode); err != nil {
			return err
		}
		if err := t.mkdirs(ctx, sd, subPath, p); err != nil {
			return err
		}
	}
	for _, l := range dir.GetSymlinks() {
		p.links = append(p.links, [2]string{filepath.Join(path, l.GetName()), l.GetTarget()})
	}
	return nil
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

// prepare makes dir, or checks that it is an empty directory, and reports
// whether it made it.
func prepare(dir string) (created bool, err error) {
	err = os.Mkdir(dir, dirMode)
	if err == nil {
		return true, os.Chmod(dir, dirMode)
	}
	if !errors.Is(err, fs.ErrExist) {
		return false, err
	}
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	if info, err := f.Stat(); err != nil {
		return false, err
	} else if !info.IsDir() {
		return false, fmt.Errorf("%s exists and is not a directory", dir)
	}
	if names, err := f.Readdirnames(1); len(names) > 0 {
		return false, fmt.Errorf("%s exists and is not empty", dir)
	} else if err != nil && err != io.EOF {
		return false, err
	}
	return false, nil
}

// cleanup removes what a failed Write made in dir.
func cleanup(dir string, created bool) {
	if created {
		os.RemoveAll(dir)
		return
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		os.RemoveAll(filepath.Join(dir, e.Name()))
	}
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
