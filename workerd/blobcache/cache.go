package blobcache

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
)

// Modes of the cache's files. They are the modes every hardlink of them has.
const (
	fileMode os.FileMode = 0o444
	execMode os.FileMode = 0o555
)

// Options configure a Cache. Dir, MaxBytes and Remote are required.
type Options struct {
	// Dir holds the cache's files; it is created if absent. It should be
	// on the file system of the directories the files are linked into.
	Dir string
	// MaxBytes bounds the content the cache keeps. A single blob larger
	// than that is still served; it is evicted by the next insertion.
	MaxBytes int64
	// Remote is where missing blobs come from.
	Remote cas.BlobGetter
	// Logger receives operational messages; nil means slog.Default().
	Logger *slog.Logger
}

// Validate reports whether o is usable.
func (o Options) Validate() error {
	switch {
	case o.Dir == "":
		return errors.New("blobcache: Options.Dir is required")
	case o.MaxBytes <= 0:
		return errors.New("blobcache: Options.MaxBytes must be positive")
	case o.Remote == nil:
		return errors.New("blobcache: Options.Remote is required")
	}
	return nil
}

// Stats count what a Cache did since Open.
type Stats struct {
	// Hits counts requests answered by a file already in the cache,
	// including requests that waited for another one's fetch.
	Hits int64
	// Misses counts requests that had to fill the cache: from Remote, or
	// by copying the other (executable or plain) variant of the blob.
	Misses int64
	// Waited counts requests that found the blob being filled by another
	// request and waited for it instead of fetching it again.
	Waited int64
	// BytesFetched is the content read from Remote.
	BytesFetched int64
	// BytesStored is the content the cache holds now, in Files files.
	BytesStored int64
	Files       int
	// Evictions counts files removed to stay within MaxBytes.
	Evictions int64
}

// key names one cache file: a blob in one of its two modes.
type key struct {
	d    digest.Digest
	exec bool
}

// fetch is a fill in progress; done is closed when err is set.
type fetch struct {
	done chan struct{}
	err  error
}

// Cache is a size-bounded cache of blobs in files. Create it with Open.
// It is safe for concurrent use; one directory must be used by one Cache
// at a time.
type Cache struct {
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	entries  map[key]*list.Element // values are keys; guarded by mu
	lru      *list.List            // most recently used at the front; guarded by mu
	bytes    int64                 // content of entries; guarded by mu
	inflight map[key]*fetch        // guarded by mu
	stats    Stats                 // guarded by mu
}

// Open opens or creates the cache in opts.Dir and rebuilds its index from
// the files there.
func Open(opts Options) (*Cache, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c := &Cache{
		opts:     opts,
		log:      opts.Logger,
		entries:  map[key]*list.Element{},
		lru:      list.New(),
		inflight: map[key]*fetch{},
	}
	if err := c.load(); err != nil {
		return nil, fmt.Errorf("blobcache: open %s: %w", opts.Dir, err)
	}
	if err := c.makeShards(); err != nil {
		return nil, fmt.Errorf("blobcache: open %s: %w", opts.Dir, err)
	}
	return c, nil
}

// makeShards creates the shard directories that are missing, when the
// worker starts rather than in the middle of the first fetches of its first
// actions (a mkdir costs 0.2-1 ms on this project's virtual disks, on the
// path of a lazy FUSE read that waits for the fetch).
func (c *Cache) makeShards() error {
	for i := range 256 {
		err := os.Mkdir(filepath.Join(c.opts.Dir, fmt.Sprintf("%02x", i)), 0o755)
		if err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	}
	return nil
}

// Stats returns the cache's counters.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.BytesStored = c.bytes
	s.Files = len(c.entries)
	return s
}

// Path returns the name of a file with d's content, mode 0444, or 0555 when
// executable is set, fetching it from Remote when the cache lacks it. The
// file must not be modified; callers hardlink, open or copy it. It may be
// evicted as soon as Path returns: a caller that then finds it absent asks
// again. A blob Remote lacks is an error wrapping cas.ErrNotFound (and
// cas.MissingError when Remote gives one); content that does not match d
// wraps digest.ErrMismatch and is not kept.
func (c *Cache) Path(ctx context.Context, d digest.Digest, executable bool) (string, error) {
	k := key{d, executable}
	for {
		c.mu.Lock()
		if e, ok := c.entries[k]; ok {
			c.lru.MoveToFront(e)
			c.stats.Hits++
			c.mu.Unlock()
			return c.path(k), nil
		}
		if f, ok := c.inflight[k]; ok {
			c.stats.Waited++
			c.mu.Unlock()
			select {
			case <-f.done:
			case <-ctx.Done():
				return "", fmt.Errorf("blob %v: %w", d, ctx.Err())
			}
			// Whoever filled the cache failed because its own context
			// ended: this request may still succeed on its own.
			if f.err == nil || (isContextError(f.err) && ctx.Err() == nil) {
				continue
			}
			return "", f.err
		}
		f := &fetch{done: make(chan struct{})}
		c.inflight[k] = f
		// The other mode's file of the same blob, when it is being filled
		// already: this fill copies it rather than fetching the blob again.
		// Taken under mu when f is registered, so of two such fills only
		// the later one waits for the other.
		other := c.inflight[key{d, !executable}]
		c.stats.Misses++
		c.mu.Unlock()

		f.err = c.fill(ctx, k, other)
		if f.err != nil {
			c.mu.Lock()
			delete(c.inflight, k)
			c.mu.Unlock()
		}
		close(f.done)
		if f.err != nil {
			return "", f.err
		}
		return c.path(k), nil
	}
}

func isContextError(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// path is the name of k's file.
func (c *Cache) path(k key) string {
	h := k.d.Hash.String()
	name := h + "-" + strconv.FormatInt(k.d.Size, 10)
	if k.exec {
		name += "-x"
	}
	return filepath.Join(c.opts.Dir, h[:2], name)
}

// insert renames the complete file tmp to k's name and adds k to the
// index, evicting others when the cache is over its size. The rename needs
// no lock: k is being filled, so it is not in the index, and evictions
// unlink only names in the index (under mu, see evictLocked).
func (c *Cache) insert(k key, tmp string) error {
	if err := os.Rename(tmp, c.path(k)); err != nil {
		return fmt.Errorf("blob %v: %w", k.d, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.inflight, k)
	c.entries[k] = c.lru.PushFront(k)
	c.bytes += k.d.Size
	c.evictLocked()
	return nil
}

// evictLocked unlinks least recently used files until the cache is within
// MaxBytes, sparing the most recent one (just inserted, about to be used).
// Unlinking happens under mu, together with the removal from the index: a
// later fill of the same blob starts only once it is out of the index, so
// its new file never loses its name to this eviction.
func (c *Cache) evictLocked() {
	for c.bytes > c.opts.MaxBytes && c.lru.Len() > 1 {
		e := c.lru.Back()
		k := e.Value.(key)
		if err := os.Remove(c.path(k)); err != nil && !errors.Is(err, os.ErrNotExist) {
			// The file stays on disk but leaves the index: the next Open
			// finds and accounts for it again.
			c.log.Error("blobcache: evict", "blob", k.d, "err", err)
		}
		c.lru.Remove(e)
		delete(c.entries, k)
		c.bytes -= k.d.Size
		c.stats.Evictions++
	}
}

// touch marks the present variant of d as used and returns its key, plain
// variant first.
func (c *Cache) touch(d digest.Digest) (key, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range []key{{d, false}, {d, true}} {
		if e, ok := c.entries[k]; ok {
			c.lru.MoveToFront(e)
			return k, true
		}
	}
	return key{}, false
}
