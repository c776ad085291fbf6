package blobcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
)

// Interfaces the cache implements, as a read-through view of Remote.
var (
	_ cas.BlobGetter    = (*Cache)(nil)
	_ cas.MissingFinder = (*Cache)(nil)
)

// maxOpenAttempts bounds how often Get asks again for a file that was
// evicted between Path and opening it: each attempt makes the blob the most
// recently used, so a second eviction needs a cache far too small for its
// load, and a third is reported rather than retried forever.
const maxOpenAttempts = 3

// Get implements cas.BlobGetter: d's content from the cache's file (either
// variant), fetched from Remote first when the cache lacks it. The caller
// closes the reader.
func (c *Cache) Get(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, error) {
	if offset < 0 || offset > d.Size {
		return nil, fmt.Errorf("read %v at offset %d: %w", d, offset, digest.ErrInvalid)
	}
	if d.IsEmpty() {
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	var err error
	for range maxOpenAttempts {
		var name string
		if k, ok := c.touch(d); ok {
			c.mu.Lock()
			c.stats.Hits++
			c.mu.Unlock()
			name = c.path(k)
		} else if name, err = c.Path(ctx, d, false); err != nil {
			return nil, err
		}
		var f *os.File
		f, err = os.Open(name)
		if errors.Is(err, os.ErrNotExist) {
			continue // evicted meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("read %v: %w", d, err)
		}
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()
			return nil, fmt.Errorf("read %v: %w", d, err)
		}
		return f, nil
	}
	return nil, fmt.Errorf("read %v: evicted from the local cache %d times in a row: %w", d, maxOpenAttempts, err)
}

// FindMissing implements cas.MissingFinder over the local files only: it
// returns the digests of ds the cache has in neither variant, in the order
// given, each once, and marks the present ones as used. It never asks
// Remote.
func (c *Cache) FindMissing(ctx context.Context, ds []digest.Digest) ([]digest.Digest, error) {
	var missing []digest.Digest
	seen := make(map[digest.Digest]bool, len(ds))
	for _, d := range ds {
		if d.IsEmpty() || seen[d] {
			continue
		}
		seen[d] = true
		if _, ok := c.touch(d); !ok {
			missing = append(missing, d)
		}
	}
	return missing, nil
}
