package inputs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sync/atomic"
	"syscall"

	"golang.org/x/sync/errgroup"

	"github.com/mound-build/mound/cas/digest"
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

// Modes of what a tree holds. Files get the mode of the cache's file.
const (
	dirMode  fs.FileMode = 0o755
	fileMode fs.FileMode = 0o444
	execMode fs.FileMode = 0o555
)

// content is a file's blob in one mode.
type content struct {
	d    digest.Digest
	exec bool
}

// plan is what a tree creates, paths relative to its directory.
type plan struct {
	dirs  []string             // parents before children
	files map[content][]string // where each content goes
	order []content            // keys of files, in tree order
	links [][2]string          // path, target
	stats Stats
}

// plan expands the tree into the paths it creates.
func (t *tree) plan() *plan {
	p := &plan{files: map[content][]string{}}
	var walk func(d digest.Digest, rel string)
	walk = func(d digest.Digest, rel string) {
		p.stats.Dirs++
		if rel != "." {
			p.dirs = append(p.dirs, rel)
		}
		dir := t.dirs[d]
		for _, f := range dir.GetFiles() {
			fd, _ := digest.FromProto(f.GetDigest()) // checked
			c := content{fd, f.GetIsExecutable()}
			if len(p.files[c]) == 0 {
				p.order = append(p.order, c)
			}
			p.files[c] = append(p.files[c], path.Join(rel, f.GetName()))
			p.stats.Files++
			p.stats.Bytes += fd.Size
		}
		for _, sub := range dir.GetDirectories() {
			sd, _ := digest.FromProto(sub.GetDigest())
			walk(sd, path.Join(rel, sub.GetName()))
		}
		for _, l := range dir.GetSymlinks() {
			p.links = append(p.links, [2]string{path.Join(rel, l.GetName()), l.GetTarget()})
			p.stats.Symlinks++
		}
	}
	walk(t.root, ".")
	p.stats.Contents = len(p.order)
	return p
}

// prepareDir makes dir exist and be empty, and reports whether it made it.
func prepareDir(dir string) (created bool, err error) {
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
	names, err := f.Readdirnames(1)
	if len(names) > 0 {
		return false, fmt.Errorf("input root %s is not empty", dir)
	}
	if err != io.EOF {
		return false, fmt.Errorf("input root %s: %w", dir, err)
	}
	return false, nil
}

// cleanup removes what Prepare made in dir.
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

// mkdirs creates the directories, mode 0755 whatever the umask.
func (p *plan) mkdirs(dir string) error {
	for _, rel := range p.dirs {
		name := filepath.Join(dir, rel)
		if err := os.Mkdir(name, dirMode); err != nil {
			return fmt.Errorf("input directory %q: %w", rel, err)
		}
		if err := os.Chmod(name, dirMode); err != nil {
			return fmt.Errorf("input directory %q: %w", rel, err)
		}
	}
	return nil
}

// placeFiles gets each content's file from files and links it everywhere
// the tree has it.
func (p *plan) placeFiles(ctx context.Context, files FileCache, dir string) error {
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

// symlinks creates the tree's symlinks, after everything else so that no
// file or directory is ever created through one.
func (p *plan) symlinks(dir string) error {
	for _, l := range p.links {
		if err := os.Symlink(l[1], filepath.Join(dir, l[0])); err != nil {
			return fmt.Errorf("input symlink %q: %w", l[0], err)
		}
	}
	return nil
}
