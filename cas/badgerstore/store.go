package badgerstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/mound-build/mound/cas/digest"
)

// Options configure a Store. The zero value is not valid: Dir is required.
type Options struct {
	// Dir is the data directory; it is created if missing.
	Dir string
	// MaxSize bounds the bytes of stored blobs; 0 means unbounded. Least
	// recently used blobs are evicted to stay under it.
	MaxSize int64
	// InlineLimit is the largest blob kept inside Badger; larger blobs are
	// files. 0 means DefaultInlineLimit.
	InlineLimit int64
	// Logger receives operational messages; nil means slog.Default().
	Logger *slog.Logger
}

// DefaultInlineLimit keeps typical source files and object files inside
// Badger (group commit, no per-file fsync) while streams of large outputs go
// to files, which eviction can free at once.
const DefaultInlineLimit = 1 << 20

// Validate reports whether o can open a store.
func (o Options) Validate() error {
	if o.Dir == "" {
		return errors.New("badgerstore: Options.Dir is required")
	}
	if o.MaxSize < 0 || o.InlineLimit < 0 {
		return errors.New("badgerstore: MaxSize and InlineLimit must not be negative")
	}
	return nil
}

// Store is the Badger-backed blob store and action cache. Safe for
// concurrent use. Close it to flush access times and release the directory.
type Store struct {
	opts  Options
	db    *badger.DB
	log   *slog.Logger
	blobs string // directory of large blob files
	tmp   string // directory of uploads in progress
	index *index
	packs *packs
	puts  inflight
	// compacting serializes compactions (background and in makeRoom).
	compacting sync.Mutex
	stop       chan struct{}
	// compactNow asks the background loop to compact packs early, when
	// eviction left many dead bytes.
	compactNow chan struct{}
	evictions  atomic.Int64
	// flushedAt is when access times were last persisted (unix seconds).
	flushedAt atomic.Int64
	wg        sync.WaitGroup // background loops
	closed    sync.Once
}

// Open opens or creates the store in opts.Dir, deleting what an earlier
// crash left half-written.
func Open(opts Options) (*Store, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.InlineLimit == 0 {
		opts.InlineLimit = DefaultInlineLimit
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Store{
		opts:  opts,
		log:   opts.Logger,
		blobs: filepath.Join(opts.Dir, "blobs"),
		tmp:   filepath.Join(opts.Dir, "tmp"),
		index: newIndex(),
		puts:  inflight{m: map[digest.Hash]chan struct{}{}},
		stop:  make(chan struct{}),

		compactNow: make(chan struct{}, 1),
	}
	if err := os.RemoveAll(s.tmp); err != nil {
		return nil, fmt.Errorf("clear %s: %w", s.tmp, err)
	}
	for _, d := range []string{s.blobs, s.tmp} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	packs, err := openPacks(filepath.Join(opts.Dir, "packs"), packBytes(opts.MaxSize))
	if err != nil {
		return nil, err
	}
	s.packs = packs
	bopts := badger.DefaultOptions(filepath.Join(opts.Dir, "badger")).
		WithSyncWrites(true).
		// Blob bodies are in packs and files; Badger holds metadata and AC
		// entries, which stay in the LSM tree below this size.
		WithValueThreshold(64 << 10).
		WithLogger(badgerLogger{opts.Logger}).
		WithMetricsEnabled(false)
	db, err := badger.Open(bopts)
	if err != nil {
		packs.close()
		return nil, fmt.Errorf("open badger in %s: %w", opts.Dir, err)
	}
	s.db = db
	if err := s.load(); err != nil {
		db.Close()
		packs.close()
		return nil, err
	}
	s.wg.Add(1)
	go s.background()
	return s, nil
}

// Close flushes access times and closes the database. Calls after the first
// return nil.
func (s *Store) Close() error {
	var err error
	s.closed.Do(func() {
		close(s.stop)
		s.wg.Wait()
		s.flushAccessTimes()
		err = s.db.Close()
		s.packs.close()
	})
	return err
}

// Stats reports the number of stored blobs and their stored bytes.
func (s *Store) Stats() (blobs int, bytes int64) { return s.index.stats() }

// background persists access times and reclaims value log space. It owns no
// state of its own; Close waits for it.
func (s *Store) background() {
	defer s.wg.Done()
	// Access times drive eviction order after a restart only, so losing the
	// last interval's worth on a crash costs little.
	flush := time.NewTicker(30 * time.Second)
	defer flush.Stop()
	gc := time.NewTicker(5 * time.Minute)
	defer gc.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-flush.C:
			s.flushAccessTimes()
			s.compact(deadTarget(s.opts.MaxSize))
		case <-s.compactNow:
			s.compact(deadTarget(s.opts.MaxSize))
		case <-gc.C:
			// Reclaim value log space of rewritten AC entries: each call
			// rewrites at most one value log file at least half garbage.
			for s.db.RunValueLogGC(0.5) == nil {
			}
		}
	}
}

// inflight makes concurrent puts of one digest happen once: the first
// writes, the others wait for it and then find the blob present.
type inflight struct {
	mu sync.Mutex
	m  map[digest.Hash]chan struct{} // guarded by mu
}

// begin returns a done function when the caller should write the blob, or
// waits for the writer in progress and returns nil.
func (f *inflight) begin(ctx context.Context, h digest.Hash) (done func(), err error) {
	for {
		f.mu.Lock()
		ch, busy := f.m[h]
		if !busy {
			ch = make(chan struct{})
			f.m[h] = ch
			f.mu.Unlock()
			return func() {
				f.mu.Lock()
				delete(f.m, h)
				f.mu.Unlock()
				close(ch)
			}, nil
		}
		f.mu.Unlock()
		select {
		case <-ch:
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any)   { b.l.Error(fmt.Sprintf("badger: "+f, a...)) }
func (b badgerLogger) Warningf(f string, a ...any) { b.l.Warn(fmt.Sprintf("badger: "+f, a...)) }
func (b badgerLogger) Infof(f string, a ...any)    {}
func (b badgerLogger) Debugf(f string, a ...any)   {}
