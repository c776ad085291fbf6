package fuseinput

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/cas/tree"
)

// FileCache gives local files holding blobs; workerd/blobcache.Cache is one.
type FileCache interface {
	// Path returns the name of a read-only file with d's content. The file
	// may disappear (be evicted) after Path returns; asking again brings
	// it back. A blob the CAS lacks wraps cas.ErrNotFound.
	Path(ctx context.Context, d digest.Digest, executable bool) (string, error)
}

// ByteCache is an optional ability of a FileCache (blobcache.Cache has it):
// finding a file without fetching it, and taking the bytes of a blob that
// the caller fetched itself. A tree uses it for files too small for
// passthrough that the cache lacks: it reads their bytes from the CAS,
// serves them at once and hands them to the cache, instead of waiting for
// the cache's file to be written (on virtual disks, creating a file can
// take longer than the fetch). Without it, the tree waits for Path.
type ByteCache interface {
	// Has says whether the cache holds d's file or is filling it, so
	// that Path needs no fetch of the caller's own.
	Has(d digest.Digest, executable bool) bool
	// Insert stores data, checked against d, as d's file.
	Insert(d digest.Digest, executable bool, data []byte) error
}

// Options configure an FS. Files is required.
type Options struct {
	// Directories serves the trees' Directory messages, verified (the
	// remote CAS client, or the worker's blob cache in front of it),
	// unless a tree names its own (TreeOptions.Directories).
	Directories cas.BlobGetter
	// Files holds the contents of the trees' files.
	Files FileCache
	// UID and GID own every entry, as the kernel reads ids: the ids of
	// the user namespace of the process that mounts the tree
	// (sandbox.InsideUID and InsideGID). The kernel refuses writes to
	// entries owned by ids that namespace does not map.
	UID, GID uint32
	// Passthrough lets the kernel read and write files in the local blob
	// cache and the per-action layer directly (FUSE passthrough, Linux 6.9
	// and later, CAP_SYS_ADMIN), without a round trip through this process
	// for every read. Where the kernel refuses it, files are served
	// through this process and the tree works the same.
	Passthrough bool
	// DirectoryBytes bounds the Directory messages kept in memory across
	// trees (counted by their encoded size); 0 means 64 MiB, about
	// 60,000 directories of a typical source tree.
	DirectoryBytes int64
	// Logger receives operational messages; nil means slog.Default().
	Logger *slog.Logger
}

// Validate reports whether o is usable.
func (o Options) Validate() error {
	if o.Files == nil {
		return errors.New("fuseinput: Options.Files is required")
	}
	if o.DirectoryBytes < 0 {
		return errors.New("fuseinput: Options.DirectoryBytes is negative")
	}
	return nil
}

// FS presents input trees. One FS serves every action of a worker: it
// keeps the Directory messages that trees read, so that actions on the same
// input root list each directory once. Close it when the worker stops.
// Safe for concurrent use.
type FS struct {
	opts       Options
	dirs       *dirCache
	readAheads chan struct{} // semaphore of readAheadParallelism

	mu           sync.Mutex
	bytes        map[digest.Digest]*byteFetch // small inputs read, not in the cache yet; guarded by mu
	pendingBytes int64                        // their size; guarded by mu
	closed       bool                         // guarded by mu

	// inserts carries hand-overs of fetched small inputs to the cache to
	// the insertWorkers goroutines, which Close waits for.
	inserts chan func()
	workers sync.WaitGroup
}

// Writing fetched small inputs into the cache happens once the action that
// fetched them has ended (Tree.Close), on insertWorkers goroutines:
// creating a file costs up to a millisecond of kernel time on the project's
// virtual disks (measured: an action reading 200 small inputs ran 40% longer
// with the writes beside it), and none of it needs to delay an action. insertQueue bounds the queue;
// past it a hand-over is made by its caller, which slows a flood down.
const (
	insertWorkers = 2
	insertQueue   = 4096
)

// spawn runs fn on an insert worker, or now when the queue is full or the
// FS closed.
func (f *FS) spawn(fn func()) {
	f.mu.Lock()
	queued := false
	if !f.closed {
		select {
		case f.inserts <- fn:
			queued = true
		default:
		}
	}
	f.mu.Unlock()
	if !queued {
		fn()
	}
}

// pending says whether d's bytes were read for a tree and wait to be
// handed to the cache: a prefetch of d has nothing to do.
func (f *FS) pending(d digest.Digest) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.bytes[d]
	return ok
}

// Close waits for the hand-overs to the cache still queued. Trees must be
// closed first.
func (f *FS) Close() {
	f.mu.Lock()
	if !f.closed {
		f.closed = true
		close(f.inserts)
	}
	f.mu.Unlock()
	f.workers.Wait()
}

// byteFetch is a read of a small input's bytes (see Tree.smallContent).
type byteFetch struct {
	done chan struct{}
	data []byte // set before done is closed
	err  error  // set before done is closed
}

// maxPendingBytes bounds the bytes of small inputs held in memory until
// they reach the cache: an action reading thousands of headers the cache
// lacks, beside others, could otherwise pin gigabytes. Past it, trees wait
// for the cache's files (Path) instead.
const maxPendingBytes = 256 << 20

// errTooMuchPending says smallBytes holds maxPendingBytes already.
var errTooMuchPending = errors.New("too many fetched inputs wait for the cache")

// smallBytes reads the small blob d from g once for all concurrent callers.
// The caller that read it also gets insert, which hands the bytes to the
// cache bc and must be run (it is nil for the others); until it has run,
// the bytes stay here for any caller, so that none reads them again. The read stays known until the cache has the file, so
// that no caller in between reads it again. A failure that is the first
// caller's cancellation is retried by the others.
func (f *FS) smallBytes(ctx context.Context, g cas.BlobGetter, bc ByteCache, d digest.Digest, exec bool) (data []byte, insert func(), err error) {
	for {
		f.mu.Lock()
		if bf, ok := f.bytes[d]; ok {
			f.mu.Unlock()
			select {
			case <-bf.done:
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			}
			if bf.err != nil && ctx.Err() == nil {
				continue // only successes are shared; the entry is gone
			}
			return bf.data, nil, bf.err
		}
		if f.pendingBytes+d.Size > maxPendingBytes {
			f.mu.Unlock()
			return nil, nil, errTooMuchPending
		}
		bf := &byteFetch{done: make(chan struct{})}
		f.bytes[d] = bf
		f.pendingBytes += d.Size
		f.mu.Unlock()
		data, err := cas.ReadAll(ctx, g, d)
		forget := func() {
			f.mu.Lock()
			if f.bytes[d] == bf {
				delete(f.bytes, d)
				f.pendingBytes -= d.Size
			}
			f.mu.Unlock()
		}
		if err != nil {
			// Forgotten before waiters wake, so that they read it
			// themselves rather than find this failure again.
			forget()
			bf.err = err
			close(bf.done)
			return nil, nil, err
		}
		bf.data = data
		close(bf.done)
		return bf.data, func() {
			defer forget()
			if err := bc.Insert(d, exec, bf.data); err != nil {
				f.opts.Logger.Warn("fuseinput: keeping a fetched input in the cache", "blob", d, "err", err)
			}
		}, nil
	}
}

// New returns an FS.
func New(opts Options) (*FS, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.DirectoryBytes == 0 {
		opts.DirectoryBytes = 64 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	f := &FS{
		opts: opts, dirs: newDirCache(opts.DirectoryBytes), readAheads: make(chan struct{}, readAheadParallelism),
		bytes: map[digest.Digest]*byteFetch{}, inserts: make(chan func(), insertQueue),
	}
	for range insertWorkers {
		f.workers.Add(1)
		go func() {
			defer f.workers.Done()
			for fn := range f.inserts {
				fn()
			}
		}()
	}
	return f, nil
}

// directory returns the checked Directory message d from g, read once for
// all concurrent callers and kept while it is recently used. A message that
// is missing wraps cas.ErrNotFound; one that is malformed wraps
// tree.ErrInvalid. It also returns the time the caller waited for it.
func (f *FS) directory(ctx context.Context, g cas.BlobGetter, d digest.Digest) (*repb.Directory, time.Duration, error) {
	return f.dirs.get(ctx, d, func(ctx context.Context) (*repb.Directory, error) {
		b, err := cas.ReadAll(ctx, g, d)
		if err != nil {
			return nil, err
		}
		return parseDirectory(d, b)
	})
}

// parseDirectory decodes and checks the Directory message b of digest d
// (verified by the getter that read it).
func parseDirectory(d digest.Digest, b []byte) (*repb.Directory, error) {
	dir := &repb.Directory{}
	if err := proto.Unmarshal(b, dir); err != nil {
		return nil, fmt.Errorf("directory %v: %w: not a Directory message: %v", d, tree.ErrInvalid, err)
	}
	if err := tree.CheckDirectory(dir); err != nil {
		return nil, fmt.Errorf("directory %v: %w", d, err)
	}
	return dir, nil
}

// readAheadDirs bounds the subdirectories read ahead when a directory is
// loaded: their messages are small (a few hundred bytes to a few KiB), so
// a thousand fit in one or two batch requests.
const readAheadDirs = 1000

// readAheadParallelism bounds the read-aheads of an FS in flight: each is
// one batch request to the CAS, and they only hide latency.
const readAheadParallelism = 4

// readAhead reads the Directory messages ds (the subdirectories of a
// directory just loaded) in one batch when g can batch, so that looking
// into them needs no round trip of its own. Lookups of them meanwhile wait
// for this read rather than starting their own. Failures are left for a
// lookup to find.
func (f *FS) readAhead(ctx context.Context, g cas.BlobGetter, ds []digest.Digest) {
	bg, ok := g.(cas.BatchGetter)
	if !ok {
		return
	}
	// A read-ahead only hides latency: when readAheadParallelism are
	// running, this one is skipped rather than queued behind them (a walk
	// of a large tree would queue thousands).
	select {
	case f.readAheads <- struct{}{}:
		defer func() { <-f.readAheads }()
	default:
		return
	}
	todo, fetches := f.dirs.claim(ds[:min(len(ds), readAheadDirs)])
	if len(todo) == 0 {
		return
	}
	data, errs := bg.GetBatch(ctx, todo)
	for i, d := range todo {
		if errs[i] != nil {
			f.dirs.settle(d, fetches[i], nil, errs[i])
			continue
		}
		dir, err := parseDirectory(d, data[i])
		f.dirs.settle(d, fetches[i], dir, err)
	}
}

// dirCache is a size-bounded LRU of parsed Directory messages with one read
// in flight per digest.
type dirCache struct {
	max int64

	mu       sync.Mutex
	bytes    int64                           // guarded by mu
	lru      *list.List                      // of *dirEntry, most recent first; guarded by mu
	entries  map[digest.Digest]*list.Element // guarded by mu
	inflight map[digest.Digest]*dirFetch     // guarded by mu
}

type dirEntry struct {
	d   digest.Digest
	dir *repb.Directory
}

type dirFetch struct {
	done chan struct{}
	dir  *repb.Directory // set before done is closed
	err  error           // set before done is closed
}

func newDirCache(max int64) *dirCache {
	return &dirCache{max: max, lru: list.New(), entries: map[digest.Digest]*list.Element{}, inflight: map[digest.Digest]*dirFetch{}}
}

func (c *dirCache) get(ctx context.Context, d digest.Digest, read func(context.Context) (*repb.Directory, error)) (*repb.Directory, time.Duration, error) {
	start := time.Now()
	retried := false
	for {
		c.mu.Lock()
		if e, ok := c.entries[d]; ok {
			c.lru.MoveToFront(e)
			c.mu.Unlock()
			return e.Value.(*dirEntry).dir, 0, nil
		}
		if f, ok := c.inflight[d]; ok && !retried {
			c.mu.Unlock()
			select {
			case <-f.done:
			case <-ctx.Done():
				return nil, time.Since(start), ctx.Err()
			}
			if f.err != nil && ctx.Err() == nil {
				// Only successes are shared: the reader's failure may be
				// its own (its cancellation, its instance's CAS).
				retried = true
				continue
			}
			return f.dir, time.Since(start), f.err
		}
		f := &dirFetch{done: make(chan struct{})}
		c.inflight[d] = f
		c.mu.Unlock()

		dir, err := read(ctx)
		c.settle(d, f, dir, err)
		return dir, time.Since(start), err
	}
}

// claim registers a read of each digest of ds that is neither kept nor
// being read, and returns those digests with their fetches: the caller
// reads them and settles each.
func (c *dirCache) claim(ds []digest.Digest) ([]digest.Digest, []*dirFetch) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var todo []digest.Digest
	var fetches []*dirFetch
	for _, d := range ds {
		if _, ok := c.entries[d]; ok {
			continue
		}
		if _, ok := c.inflight[d]; ok {
			continue
		}
		f := &dirFetch{done: make(chan struct{})}
		c.inflight[d] = f
		todo, fetches = append(todo, d), append(fetches, f)
	}
	return todo, fetches
}

// settle ends the read f of d, keeping dir when it succeeded.
func (c *dirCache) settle(d digest.Digest, f *dirFetch, dir *repb.Directory, err error) {
	c.mu.Lock()
	if c.inflight[d] == f {
		delete(c.inflight, d)
	}
	f.dir, f.err = dir, err
	if err == nil {
		c.addLocked(d, dir)
	}
	c.mu.Unlock()
	close(f.done)
}

func (c *dirCache) addLocked(d digest.Digest, dir *repb.Directory) {
	if _, ok := c.entries[d]; ok {
		return // read twice: a retry after another reader's failure
	}
	c.entries[d] = c.lru.PushFront(&dirEntry{d: d, dir: dir})
	c.bytes += d.Size
	for c.bytes > c.max && c.lru.Len() > 1 {
		e := c.lru.Back()
		de := e.Value.(*dirEntry)
		c.lru.Remove(e)
		delete(c.entries, de.d)
		c.bytes -= de.d.Size
	}
}
