package blobcache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/mound-build/mound/cas/digest"
)

// fill writes k's file: from the other variant of the blob when the cache
// has it (once other, that variant's fill in progress if any, is done),
// from Remote otherwise (nothing for the empty blob), into a temporary
// file that gets k's mode and is renamed into place by insert.
func (c *Cache) fill(ctx context.Context, k key, other *fetch) (err error) {
	if other != nil {
		select {
		case <-other.done:
		case <-ctx.Done():
			return fmt.Errorf("blob %v: %w", k.d, ctx.Err())
		}
	}
	f, err := c.createTemp(k)
	if err != nil {
		return fmt.Errorf("blob %v: %w", k.d, err)
	}
	name := f.Name()
	defer func() {
		if f != nil {
			f.Close()
		}
		if err != nil {
			os.Remove(name)
		}
	}()
	if !k.d.IsEmpty() {
		copied, err := c.copyVariant(k, f)
		if err != nil {
			return err
		}
		if !copied {
			if err := c.download(ctx, k, f); err != nil {
				return err
			}
		}
	}
	mode := fileMode
	if k.exec {
		mode = execMode
	}
	// Chmod rather than a mode at creation: the umask must not apply.
	if err := f.Chmod(mode); err != nil {
		return fmt.Errorf("blob %v: %w", k.d, err)
	}
	cerr := f.Close()
	f = nil
	if cerr != nil {
		return fmt.Errorf("blob %v: %w", k.d, cerr)
	}
	return c.insert(k, name)
}

// createTemp creates a temporary file in the directory of k's final name,
// so that the rename stays within it and concurrent fills spread over the
// shards. Open makes the shards; one removed since is made again.
func (c *Cache) createTemp(k key) (*os.File, error) {
	shard := filepath.Dir(c.path(k))
	f, err := os.CreateTemp(shard, "fetch-")
	if errors.Is(err, os.ErrNotExist) {
		if err := os.Mkdir(shard, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, err
		}
		f, err = os.CreateTemp(shard, "fetch-")
	}
	return f, err
}

// download streams the blob from Remote into f through digest.Verifier,
// the one check of content entering the worker's cache.
func (c *Cache) download(ctx context.Context, k key, f *os.File) error {
	r, err := c.opts.Remote.Get(ctx, k.d, 0)
	if err != nil {
		return fmt.Errorf("fetch blob %v: %w", k.d, err)
	}
	defer r.Close()
	// The Verifier comes first: it refuses bytes beyond the blob's size
	// before they reach the disk.
	v := digest.NewVerifier(k.d)
	n, err := io.Copy(io.MultiWriter(v, f), r)
	c.mu.Lock()
	c.stats.BytesFetched += n
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("fetch blob %v: %w", k.d, err)
	}
	if err := v.Check(); err != nil {
		return fmt.Errorf("fetch blob %v: %w", k.d, err)
	}
	return nil
}

// copyVariant copies the other mode's file of the same blob into f, when
// the cache has it: its content was verified when it was fetched. It
// reports false when there is no such file (or it was just evicted).
func (c *Cache) copyVariant(k key, f *os.File) (bool, error) {
	other := key{k.d, !k.exec}
	c.mu.Lock()
	_, ok := c.entries[other]
	c.mu.Unlock()
	if !ok {
		return false, nil
	}
	src, err := os.Open(c.path(other))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("blob %v: %w", k.d, err)
	}
	defer src.Close()
	n, err := io.Copy(f, src)
	if err != nil {
		return false, fmt.Errorf("blob %v: copy %s: %w", k.d, src.Name(), err)
	}
	if n != k.d.Size {
		return false, fmt.Errorf("blob %v: %s holds %d bytes", k.d, src.Name(), n)
	}
	return true, nil
}
