package badgerstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
)

// Evictions reports how many blobs the store evicted since it was opened.
func (s *Store) Evictions() int64 { return s.evictions.Load() }

// makeRoom reserves n bytes for a blob about to be written, evicting least
// recently used blobs when the store would exceed MaxSize.
func (s *Store) makeRoom(n int64) error {
	victims, err := s.index.reserve(n, s.opts.MaxSize)
	if err != nil {
		return fmt.Errorf("%w: %v", cas.ErrFull, err)
	}
	s.evict(victims)
	// Reclaim what eviction freed in packs before the store could exceed
	// its size; below that, the background loop does it.
	if max := s.opts.MaxSize; max > 0 && s.deadBytes() > max-liveShare(max) {
		s.compact(deadTarget(max))
	}
	return nil
}

// evict deletes blobs already taken out of the index. A blob that a put is
// writing right now is put back instead: that put will find it absent and
// write it, and must not see its bytes deleted under it.
func (s *Store) evict(victims []*entry) {
	for _, e := range victims {
		done, busy := s.puts.try(e.d.Hash)
		if busy {
			s.index.add(e)
			continue
		}
		err := s.db.Update(func(txn *badger.Txn) error { return txn.Delete(metaKey(e.d.Hash)) })
		if err == nil && e.enc.inFile() {
			err = os.Remove(s.blobPath(e.d.Hash, e.enc))
		}
		done()
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Error("evict blob", "digest", e.d, "err", err)
			continue
		}
		s.evictions.Add(1)
	}
	if max := s.opts.MaxSize; len(victims) > 0 && s.deadBytes() > deadTarget(max) {
		select {
		case s.compactNow <- struct{}{}:
		default:
		}
	}
}

func (s *Store) deadBytes() int64 {
	s.index.mu.Lock()
	defer s.index.mu.Unlock()
	return s.index.dead
}

// try is begin without waiting: it reports busy when a writer holds h.
func (f *inflight) try(h digest.Hash) (done func(), busy bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.m[h]; ok {
		return nil, true
	}
	ch := make(chan struct{})
	f.m[h] = ch
	return func() {
		f.mu.Lock()
		delete(f.m, h)
		f.mu.Unlock()
		close(ch)
	}, false
}

// load rebuilds the index from Badger and reconciles it with the blob files:
// files without metadata (a crash between rename and commit) are deleted,
// and metadata without its file is dropped.
func (s *Store) load() error {
	var entries []*entry
	var bad [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixMeta}, PrefetchValues: true, PrefetchSize: 1000})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			key := item.KeyCopy(nil)
			var h digest.Hash
			if len(key) != 1+digest.HashSize {
				bad = append(bad, key)
				continue
			}
			copy(h[:], key[1:])
			err := item.Value(func(v []byte) error {
				e, packID, err := parseMeta(h, v)
				if err != nil {
					bad = append(bad, key)
					return nil
				}
				if !e.enc.inFile() {
					if e.pk = s.packs.get(packID); e.pk == nil {
						s.log.Warn("pack of a blob is missing; dropping it from the index", "digest", e.d, "pack", packID)
						bad = append(bad, key)
						return nil
					}
				}
				entries = append(entries, e)
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("load index: %w", err)
	}
	files, err := s.scanFiles()
	if err != nil {
		return err
	}
	// Oldest first, so that each add pushes a more recent entry in front.
	slices.SortFunc(entries, func(a, b *entry) int { return int(a.atime - b.atime) })
	for _, e := range entries {
		if e.enc.inFile() {
			p := s.blobPath(e.d.Hash, e.enc)
			if !files[p] {
				s.log.Warn("blob file missing; dropping it from the index", "digest", e.d, "path", p)
				bad = append(bad, metaKey(e.d.Hash))
				continue
			}
			delete(files, p)
		}
		s.index.add(e)
	}
	for p := range files {
		s.log.Info("removing blob file left by an interrupted upload", "path", p)
		os.Remove(p)
	}
	// Pack bytes no entry references (evicted, or written before a crash
	// and never committed) are dead until compaction.
	s.index.mu.Lock()
	for _, pk := range s.packs.list() {
		s.index.dead += pk.size - pk.live
	}
	s.index.mu.Unlock()
	for _, k := range bad {
		if err := s.db.Update(func(txn *badger.Txn) error { return txn.Delete(k) }); err != nil {
			return fmt.Errorf("drop bad index key: %w", err)
		}
	}
	n, size := s.index.stats()
	s.log.Info("store opened", "dir", s.opts.Dir, "blobs", n, "bytes", size, "max_bytes", s.opts.MaxSize)
	if s.opts.MaxSize > 0 && size > s.opts.MaxSize {
		// The limit shrank since the last run.
		if err := s.makeRoom(0); err != nil {
			return err
		}
		s.index.release(0)
	}
	return nil
}

// scanFiles lists every blob file (blobs/xx/name) by path.
func (s *Store) scanFiles() (map[string]bool, error) {
	files := map[string]bool{}
	dirs, err := os.ReadDir(s.blobs)
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", s.blobs, err)
	}
	for _, d := range dirs {
		sub := filepath.Join(s.blobs, d.Name())
		names, err := os.ReadDir(sub)
		if err != nil {
			return nil, fmt.Errorf("scan %s: %w", sub, err)
		}
		for _, n := range names {
			if strings.HasPrefix(n.Name(), ".") {
				continue
			}
			files[filepath.Join(sub, n.Name())] = true
		}
	}
	return files, nil
}

// atimeSlack is how far an access time may drift before it is persisted:
// finer order than this does not matter to eviction after a restart, and it
// keeps reads from turning into writes.
const atimeSlack = 60

// flushAccessTimes persists access times that moved by more than
// atimeSlack, so that LRU order survives a restart approximately.
func (s *Store) flushAccessTimes() {
	now := time.Now().Unix()
	since := s.flushedAt.Swap(now)
	dirty := s.index.dirty(since-1, atimeSlack)
	// Each entry is rewritten holding its digest's slot, from its current
	// state: an eviction or a compaction move cannot interleave, so the
	// metadata written is never stale. Busy blobs are skipped this time.
	const perBatch = 1000
	for len(dirty) > 0 {
		chunk := dirty[:min(perBatch, len(dirty))]
		dirty = dirty[len(chunk):]
		wb := s.db.NewWriteBatch()
		var held []func()
		for i := range chunk {
			done, busy := s.puts.try(chunk[i].d.Hash)
			if busy {
				continue
			}
			held = append(held, done)
			if e := s.index.current(chunk[i].d); e != nil {
				wb.Set(metaKey(e.d.Hash), e.meta())
			}
		}
		if err := wb.Flush(); err != nil {
			s.log.Warn("persist access times", "err", err)
		}
		for _, done := range held {
			done()
		}
	}
}
