package blobcache

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mound-build/mound/cas/digest"
)

// found is a cache file seen by load.
type found struct {
	k     key
	mtime time.Time
}

// load prepares the directory and builds the index from the files in it,
// least recently modified at the back of the LRU list. Anything else in
// the shards (temporary files of fetches an earlier process did not
// finish, truncated files) is removed.
func (c *Cache) load() error {
	if err := os.MkdirAll(c.opts.Dir, 0o755); err != nil {
		return err
	}
	shards, err := os.ReadDir(c.opts.Dir)
	if err != nil {
		return err
	}
	var files []found
	var removed int
	for _, s := range shards {
		if !s.IsDir() || !isShard(s.Name()) {
			continue
		}
		shard := filepath.Join(c.opts.Dir, s.Name())
		entries, err := os.ReadDir(shard)
		if err != nil {
			return err
		}
		for _, e := range entries {
			f, ok := c.check(shard, e)
			if !ok {
				if err := os.RemoveAll(filepath.Join(shard, e.Name())); err != nil {
					return err
				}
				removed++
				continue
			}
			files = append(files, f)
		}
	}
	slices.SortFunc(files, func(a, b found) int { return a.mtime.Compare(b.mtime) })
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range files {
		c.entries[f.k] = c.lru.PushFront(f.k)
		c.bytes += f.k.d.Size
	}
	c.evictLocked()
	c.log.Info("blobcache: opened", "dir", c.opts.Dir, "files", len(c.entries), "bytes", c.bytes, "removed", removed)
	return nil
}

// isShard reports whether name is a shard's: two lowercase hex digits.
func isShard(name string) bool {
	return len(name) == 2 && strings.Trim(name, "0123456789abcdef") == ""
}

// check accepts a directory entry that is a complete cache file: a
// regular file named for its blob, in the right shard, with the blob's
// size and the variant's mode. A file without its final name or mode was
// never renamed into place by this package.
func (c *Cache) check(shard string, e os.DirEntry) (found, bool) {
	k, ok := parseName(e.Name())
	if !ok || filepath.Base(shard) != e.Name()[:2] {
		return found{}, false
	}
	info, err := e.Info()
	if err != nil || !info.Mode().IsRegular() || info.Size() != k.d.Size {
		return found{}, false
	}
	want := fileMode
	if k.exec {
		want = execMode
	}
	if info.Mode().Perm() != want {
		return found{}, false
	}
	return found{k: k, mtime: info.ModTime()}, true
}

// parseName reads the names path writes: "<hash>-<size>" with "-x" for
// the executable variant.
func parseName(name string) (key, bool) {
	var k key
	if rest, ok := strings.CutSuffix(name, "-x"); ok {
		k.exec = true
		name = rest
	}
	hash, size, ok := strings.Cut(name, "-")
	if !ok {
		return key{}, false
	}
	n, err := digest.ParseSize(size)
	if err != nil {
		return key{}, false
	}
	d, err := digest.New(hash, n)
	if err != nil {
		return key{}, false
	}
	k.d = d
	return k, true
}
