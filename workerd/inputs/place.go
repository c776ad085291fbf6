package inputs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"

	"golang.org/x/sync/errgroup"

	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/cas/tree"
)

// fetchParallelism is how many distinct file contents are fetched and
// placed at once. A cold blob is a round trip to the remote CAS (one small
// request, or a stream for a large blob), so many in flight hide the
// network's latency; 32 keeps a fast link busy with small files while
// bounding what a tree holds at once: 32 goroutines, open files and
// requests (each at most a batch message, ~4 MiB, buffered by the remote
// client). For warm blobs the work is a link(2) each, which this also
// spreads over the cores.
const fetchParallelism = 32

// maxPlaceAttempts bounds how often a file whose cache entry was evicted
// between Path and link(2) is asked for again. Each request makes the blob
// the most recently used, so a repeat needs a cache far too small for the
// worker's load; the third is reported.
const maxPlaceAttempts = 3

// Modes of the files copied when the cache is on another file system:
// those of the cache's files.
const (
	fileMode fs.FileMode = 0o444
	execMode fs.FileMode = 0o555
)

// content is a file's blob in one mode: one file of the cache.
type content struct {
	d    digest.Digest
	exec bool
}

// placement is where each file of a tree goes, by cache file.
type placement struct {
	files map[content][]string // paths relative to the tree's directory
	order []content            // keys of files, in tree order
}

// byMode groups a tree's files by content and mode, since the cache has
// one file for each.
func byMode(files []tree.Contents) *placement {
	p := &placement{files: map[content][]string{}}
	for _, c := range files {
		for _, f := range c.Files {
			k := content{c.Digest, f.Executable}
			if len(p.files[k]) == 0 {
				p.order = append(p.order, k)
			}
			p.files[k] = append(p.files[k], f.Path)
		}
	}
	return p
}

// placeFiles gets each content's file from files and links it everywhere
// the tree has it.
func (p *placement) placeFiles(ctx context.Context, files FileCache, dir string) error {
	var copying atomic.Bool // set once links fail across file systems
	eg, gctx := errgroup.WithContext(ctx)
	eg.SetLimit(fetchParallelism)
	for _, c := range p.order {
		if gctx.Err() != nil {
			break // a placement failed, or ctx ended
		}
		eg.Go(func() error { return place(gctx, files, c, dir, p.files[c], &copying) })
	}
	if err := eg.Wait(); err != nil {
		return err
	}
	return ctx.Err()
}

// place creates the files rels of dir with content c.
func place(ctx context.Context, files FileCache, c content, dir string, rels []string, copying *atomic.Bool) error {
	done := 0
	for attempt := 1; ; attempt++ {
		src, err := files.Path(ctx, c.d, c.exec)
		if err != nil {
			return fmt.Errorf("input file %q: %w", rels[0], err)
		}
		for ; done < len(rels); done++ {
			dst := filepath.Join(dir, rels[done])
			if err = placeOne(src, dst, c.exec, copying); err != nil {
				break
			}
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) || attempt == maxPlaceAttempts {
			return fmt.Errorf("input file %q: %w", rels[done], err)
		}
		// The cache evicted src after Path returned it: ask again.
	}
}

// placeOne makes dst a hardlink of src, or a copy when they are on
// different file systems.
func placeOne(src, dst string, exec bool, copying *atomic.Bool) error {
	if !copying.Load() {
		err := os.Link(src, dst)
		if !errors.Is(err, syscall.EXDEV) {
			return err
		}
		copying.Store(true)
	}
	mode := fileMode
	if exec {
		mode = execMode
	}
	return copyFile(src, dst, mode)
}

// copyFile copies src to the new file dst with mode.
func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Chmod(mode); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
