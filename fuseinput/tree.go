package fuseinput

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/mound-build/mound/cas"

	"github.com/mound-build/mound/cas/digest"
)

// TreeOptions describe one action's tree.
type TreeOptions struct {
	// Root is the digest of the input root's Directory message.
	Root digest.Digest
	// Upper is an empty directory on the host for the action's writes
	// (the files it creates or changes). The caller creates it and removes
	// it after Close.
	Upper string
	// Directories serves this tree's Directory messages instead of
	// Options.Directories (the CAS of the action's instance), and the
	// bytes of small files the cache lacks (see ByteCache).
	Directories cas.BlobGetter
	// Prefetch are paths (relative to the root) to fetch into the local
	// cache at once, in parallel, because an earlier run of the same
	// command read them. Paths the tree lacks are skipped.
	Prefetch []string
}

// Tree is one action's view of an input tree: the FUSE file system the
// sandbox mounts (Serve), and afterwards the outputs.View the worker
// collects outputs through. Its entries live in memory; directories are
// read from the CAS when first looked up, files fetched into the local
// cache when first opened, and everything the action writes goes to files
// in TreeOptions.Upper. Create it with FS.NewTree and Close it after the
// sandbox has ended. Safe for concurrent use.
type Tree struct {
	fs    *FS
	opts  TreeOptions
	epoch time.Time // the mtime of the inputs
	root  *node

	// viewCtx is NewTree's: MkdirAll and the View read with it.
	// bgCtx bounds the tree's background work (prefetch, read-ahead of
	// directories), and Close cancels it. Requests of the file system
	// use their own.
	viewCtx context.Context
	bgCtx   context.Context
	cancel  context.CancelFunc
	bg      sync.WaitGroup // prefetch goroutines
	// prefetched is closed when the prefetch has ended.
	prefetched chan struct{}

	served chan struct{} // closed when the FUSE server ended; nil before Serve

	mu       sync.Mutex
	cond     *sync.Cond       // on mu: copy-ups waiting for releases
	inos     map[uint64]*node // numbers in use; guarded by mu
	nextIno  uint64           // for created entries; guarded by mu
	nextFile int              // names of files in Upper; guarded by mu
	access   accessLog        // guarded by mu
	err      error            // the first fetch failure; guarded by mu
	inserts  []func()         // hand-overs to the cache for Close; guarded by mu
	closed   bool             // Close has begun; guarded by mu
	pass     bool             // passthrough works on this mount; guarded by mu
}

// NewTree reads the root Directory and returns the tree of opts.Root. A
// missing root wraps cas.ErrNotFound (and cas.MissingError); a malformed
// one wraps tree.ErrInvalid.
func (f *FS) NewTree(ctx context.Context, opts TreeOptions) (*Tree, error) {
	if opts.Upper == "" {
		return nil, errors.New("fuseinput: TreeOptions.Upper is required")
	}
	if opts.Directories == nil {
		opts.Directories = f.opts.Directories
	}
	if opts.Directories == nil {
		return nil, errors.New("fuseinput: neither TreeOptions.Directories nor Options.Directories is set")
	}
	bgCtx, cancel := context.WithCancel(ctx)
	t := &Tree{
		fs: f, opts: opts, epoch: time.Now().Truncate(time.Second),
		viewCtx: ctx, bgCtx: bgCtx, cancel: cancel,
		inos: map[uint64]*node{}, nextIno: 1 << 62,
		access: newAccessLog(), prefetched: make(chan struct{}),
	}
	t.cond = sync.NewCond(&t.mu)
	t.root = &node{t: t, kind: kindDir, ino: 1, perm: dirMode, dir: opts.Root, origin: "."}
	t.inos[1] = t.root
	if err := t.load(ctx, t.root); err != nil {
		cancel()
		return nil, err
	}
	t.bg.Add(1)
	go func() {
		defer t.bg.Done()
		defer close(t.prefetched)
		if len(opts.Prefetch) > 0 {
			t.prefetch(opts.Prefetch)
		}
	}()
	return t, nil
}

// Close stops prefetching, hands the small inputs the action fetched to the
// cache (in the background, see FS.Close), and waits for the FUSE server
// to end, which it does once the sandbox that mounted the tree is gone. Call it after the
// sandbox ended; the View stays usable until the caller removes Upper.
func (t *Tree) Close() error {
	t.cancel()
	t.bg.Wait()
	t.mu.Lock()
	inserts := t.inserts
	t.inserts, t.closed = nil, true
	t.mu.Unlock()
	for _, insert := range inserts {
		t.fs.spawn(insert)
	}
	if t.served == nil {
		return nil
	}
	select {
	case <-t.served:
		return nil
	case <-time.After(closeWait):
		// The kernel ends the connection when the sandbox's mount
		// namespace goes; a server still running here is a bug worth a
		// line in the log, not a stuck worker slot.
		return fmt.Errorf("fuseinput: the FUSE server of tree %v still runs %v after Close", t.opts.Root, closeWait)
	}
}

// closeWait is how long Close waits for the server after the sandbox ended:
// the kernel aborts the connection at once, so this is far more than
// needed.
const closeWait = 10 * time.Second

// Err returns the first failure to fetch an input the action asked for (a
// blob missing from the CAS wraps cas.ErrNotFound and cas.MissingError):
// the action saw EIO, so its result must not be trusted.
func (t *Tree) Err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

// fail records err as a fetch failure of the input at p.
func (t *Tree) fail(p string, err error) {
	if isCancel(err) {
		return
	}
	t.mu.Lock()
	if t.err == nil {
		t.err = fmt.Errorf("input %q: %w", p, err)
	}
	t.mu.Unlock()
	t.fs.opts.Logger.Warn("fuseinput: fetching an input failed", "root", t.opts.Root, "path", p, "err", err)
}

func isCancel(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// load reads n's entries from its Directory message, once.
func (t *Tree) load(ctx context.Context, n *node) error {
	t.mu.Lock()
	if n.loaded || n.kind != kindDir {
		t.mu.Unlock()
		return nil
	}
	d, where := n.dir, n.origin
	t.mu.Unlock()
	dir, waited, err := t.fs.directory(ctx, t.opts.Directories, d)
	t.blocked(waited)
	if err != nil {
		t.fail(where, err)
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if n.loaded {
		return nil
	}
	n.children = make(map[string]*node, len(dir.GetFiles())+len(dir.GetDirectories())+len(dir.GetSymlinks()))
	for _, f := range dir.GetFiles() {
		fd, _ := digest.FromProto(f.GetDigest()) // checked
		c := t.inputLocked(n, f.GetName(), kindFile, fd.String()+strconv.FormatBool(f.GetIsExecutable()))
		c.d, c.exec, c.perm = fd, f.GetIsExecutable(), fileMode
		if c.exec {
			c.perm = execMode
		}
	}
	subdirs := make([]digest.Digest, 0, len(dir.GetDirectories()))
	for _, sub := range dir.GetDirectories() {
		sd, _ := digest.FromProto(sub.GetDigest()) // checked
		c := t.inputLocked(n, sub.GetName(), kindDir, "")
		c.dir, c.perm = sd, dirMode
		subdirs = append(subdirs, sd)
	}
	if len(subdirs) > 0 {
		// An action that looks into a directory mostly goes on into
		// its subdirectories: their listings come in one request.
		t.bg.Add(1)
		go func() {
			defer t.bg.Done()
			t.fs.readAhead(t.bgCtx, t.opts.Directories, subdirs)
		}()
	}
	for _, l := range dir.GetSymlinks() {
		c := t.inputLocked(n, l.GetName(), kindSymlink, l.GetTarget())
		c.target, c.perm = l.GetTarget(), 0o777
	}
	n.loaded = true
	return nil
}

// inputLocked adds the input name of kind to the directory n, numbered by
// its path and key.
func (t *Tree) inputLocked(n *node, name string, k kind, key string) *node {
	ph := hashName(n.pathHash, name)
	c := &node{t: t, parent: n, name: name, kind: k, pathHash: ph, origin: path.Join(n.origin, name)}
	if n.origin == "" {
		c.origin = "" // a directory the action made has no inputs
	}
	c.ino = t.claimInoLocked(inputIno(ph, k, key), c)
	n.children[name] = c
	return c
}

// newLocked adds an entry the action creates to n.
func (t *Tree) newLocked(n *node, name string, k kind, perm uint32) *node {
	c := &node{t: t, parent: n, name: name, kind: k, perm: perm & 0o7777, pathHash: hashName(n.pathHash, name), mtime: time.Now()}
	t.nextIno++
	c.ino = t.claimInoLocked(t.nextIno, c)
	if k == kindDir {
		c.loaded, c.children = true, map[string]*node{}
	}
	n.children[name] = c
	return c
}

// claimInoLocked returns ino for n, or the next free number if another
// node has it (a 64-bit hash collision: possible, never seen).
func (t *Tree) claimInoLocked(ino uint64, n *node) uint64 {
	for reservedIno(ino) || t.inos[ino] != nil {
		ino++
	}
	t.inos[ino] = n
	return ino
}

// upperFileLocked returns the name of a new file in the tree's layer.
func (t *Tree) upperFileLocked() string {
	t.nextFile++
	return filepath.Join(t.opts.Upper, "f"+strconv.Itoa(t.nextFile))
}

// content returns a local file with n's input content, fetching it into the
// cache; the time spent waiting counts as blocked.
func (t *Tree) content(ctx context.Context, d digest.Digest, exec bool, where string) (*os.File, error) {
	start := time.Now()
	defer func() { t.blocked(time.Since(start)) }()
	for attempt := 0; ; attempt++ {
		p, err := t.fs.opts.Files.Path(ctx, d, exec)
		if err != nil {
			t.fail(where, err)
			return nil, err
		}
		f, err := openFile(p, os.O_RDONLY)
		if errors.Is(err, os.ErrNotExist) && attempt == 0 {
			continue // evicted between Path and Open: ask again
		}
		if err != nil {
			t.fail(where, err)
			return nil, err
		}
		return f, nil
	}
}

// smallContent returns the bytes of the input d when it is small and the
// cache, a ByteCache, lacks it: read from the CAS and handed to the cache
// in the background (see ByteCache). ok is false when the caller should
// use content instead.
func (t *Tree) smallContent(ctx context.Context, d digest.Digest, exec bool, where string) (data []byte, ok bool, err error) {
	bc, isBC := t.fs.opts.Files.(ByteCache)
	if !isBC || d.Size >= passthroughMin || d.IsEmpty() {
		return nil, false, nil
	}
	if bc.Has(d, exec) {
		return nil, false, nil
	}
	start := time.Now()
	data, insert, err := t.fs.smallBytes(ctx, t.opts.Directories, bc, d, exec)
	t.blocked(time.Since(start))
	if errors.Is(err, errTooMuchPending) {
		return nil, false, nil
	}
	if err != nil {
		t.fail(where, err)
		return nil, false, err
	}
	if insert != nil {
		t.mu.Lock()
		closed := t.closed
		if !closed {
			t.inserts = append(t.inserts, insert)
		}
		t.mu.Unlock()
		if closed {
			t.fs.spawn(insert) // Close has handed over the others already
		}
	}
	return data, true, nil
}

// blocked adds to the time requests waited for the CAS.
func (t *Tree) blocked(d time.Duration) {
	if d <= 0 {
		return
	}
	t.mu.Lock()
	t.access.blocked += d
	t.mu.Unlock()
}

// MkdirAll makes the directory name (relative to the root) and its missing
// parents, as the action's own, so that it can create outputs there. An
// existing non-directory on the way is an error, like a symlink that leads
// out of the tree.
func (t *Tree) MkdirAll(name string) error {
	n := t.root
	for _, c := range strings.Split(path.Clean(name), "/") {
		if c == "." || c == "" {
			continue
		}
		if c == ".." {
			return fmt.Errorf("mkdir %q: %w", name, syscall.EINVAL)
		}
		if err := t.load(t.viewCtx, n); err != nil {
			return fmt.Errorf("mkdir %q: %w", name, err)
		}
		t.mu.Lock()
		next := n.children[c]
		if next == nil {
			next = t.newLocked(n, c, kindDir, dirMode)
		}
		t.mu.Unlock()
		if next.kind == kindSymlink {
			var err error
			if next, err = t.resolve(t.viewCtx, path.Join(pathOf(t, n), c), true); err != nil {
				return fmt.Errorf("mkdir %q: %w", name, err)
			}
		}
		if next.kind != kindDir {
			return fmt.Errorf("mkdir %q: %s is not a directory: %w", name, c, syscall.ENOTDIR)
		}
		n = next
	}
	return nil
}

func pathOf(t *Tree, n *node) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return n.relPath()
}

// maxSymlinks bounds the symlinks resolve follows, as the kernel's 40.
const maxSymlinks = 40

// resolve finds name (relative to the root), loading directories on the
// way and following symlinks inside the tree; the last one only when
// followLast is set. A symlink whose target is absolute or leads above the
// root is an error: outside the tree there is nothing of the action's.
func (t *Tree) resolve(ctx context.Context, name string, followLast bool) (*node, error) {
	todo := strings.Split(path.Clean(name), "/")
	var stack []*node // the directories on the way, for ".."
	n := t.root
	links := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case ".", "":
			continue
		case "..":
			if len(stack) == 0 {
				return nil, fmt.Errorf("%s: leads above the input root: %w", name, os.ErrPermission)
			}
			n, stack = stack[len(stack)-1], stack[:len(stack)-1]
			continue
		}
		if n.kind != kindDir {
			return nil, fmt.Errorf("%s: %w", name, syscall.ENOTDIR)
		}
		if err := t.load(ctx, n); err != nil {
			return nil, err
		}
		t.mu.Lock()
		next := n.children[c]
		var target string
		if next != nil {
			target = next.target
		}
		t.mu.Unlock()
		if next == nil {
			return nil, fmt.Errorf("%s: %w", name, os.ErrNotExist)
		}
		if next.kind == kindSymlink && (len(todo) > 0 || followLast) {
			if links++; links > maxSymlinks {
				return nil, fmt.Errorf("%s: %w", name, syscall.ELOOP)
			}
			if strings.HasPrefix(target, "/") {
				return nil, fmt.Errorf("%s: symlink to %q leaves the input root: %w", name, target, os.ErrPermission)
			}
			todo = append(strings.Split(target, "/"), todo...)
			continue
		}
		stack = append(stack, n)
		n = next
	}
	return n, nil
}

// prefetchParallelism bounds the fetches of a prefetch: each is one CAS
// request (or a wait for one already running); a few dozen keep a link and
// the server busy without crowding out the action's own requests.
const prefetchParallelism = 16

// prefetch fetches the files at paths into the local cache.
func (t *Tree) prefetch(paths []string) {
	work := make(chan string)
	var wg sync.WaitGroup
	var mu sync.Mutex
	fetched := 0
	for range prefetchParallelism {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range work {
				n, err := t.resolve(t.bgCtx, p, false)
				if err != nil {
					continue
				}
				t.mu.Lock()
				d, exec, input := n.d, n.exec, n.kind == kindFile && n.upper == ""
				t.mu.Unlock()
				if !input {
					continue
				}
				if t.fs.pending(d) {
					continue // fetched, on its way into the cache
				}
				if _, err := t.fs.opts.Files.Path(t.bgCtx, d, exec); err == nil {
					mu.Lock()
					fetched++
					mu.Unlock()
				}
			}
		}()
	}
	for _, p := range paths {
		select {
		case work <- p:
		case <-t.bgCtx.Done():
		}
		if t.bgCtx.Err() != nil {
			break
		}
	}
	close(work)
	wg.Wait()
	t.mu.Lock()
	t.access.prefetched += fetched
	t.mu.Unlock()
}

// Access returns what the action did to its tree so far.
func (t *Tree) Access() Access {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.access.snapshot()
}

// sortedKeys returns m's keys in order.
func sortedKeys(m map[string]struct{}) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// mountOptions are the FUSE options of every tree. Inputs never change and
// only the action's own processes, through this mount, change anything, so
// the kernel may keep entries, attributes, failed lookups and page contents
// for as long as the action runs.
func mountOptions() fuse.MountOptions {
	return fuse.MountOptions{
		FsName: "mound", Name: "mound",
		// No xattrs: the kernel stops asking for security.capability
		// on every write once it sees ENOSYS.
		DisableXAttrs:        true,
		IgnoreSecurityLabels: true,
		// Large requests: fewer round trips for big reads and writes.
		MaxWrite:      1 << 20,
		MaxReadAhead:  1 << 20,
		MaxStackDepth: 1,
		// O_TRUNC arrives with OPEN rather than as a later SETATTR, so
		// that overwriting an input never fetches or copies its content.
		ExtraCapabilities: fuse.CAP_ATOMIC_O_TRUNC,
	}
}

// cacheTimeout is how long the kernel keeps entries and attributes.
const cacheTimeout = 24 * time.Hour
