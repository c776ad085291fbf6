package badgerstore

import (
	"cmp"
	"slices"
)

// compactBatchBytes bounds what one compaction step reads and writes at
// once: a few MiB, like one batch of uploads.
const compactBatchBytes = 4 << 20

// deadTarget is how many dead pack bytes compaction leaves in a store of
// max bytes (0: unbounded). Below it, rewriting live blobs to reclaim space
// is not worth its I/O.
func deadTarget(max int64) int64 {
	if max <= 0 {
		return -1 // unbounded stores compact by pack (see compact)
	}
	return (max - liveShare(max)) / 2
}

// compact deletes packs no blob uses any more and rewrites packs with dead
// bytes, the deadest first, until at most target dead bytes remain. With a
// negative target (unbounded store) it rewrites the packs that are more
// than half dead, keeping space amplification under 2x.
func (s *Store) compact(target int64) {
	s.compacting.Lock()
	defer s.compacting.Unlock()
	type usage struct {
		pk         *pack
		live, size int64
	}
	var cands []usage
	for _, pk := range s.packs.list() {
		if s.packs.isActive(pk) {
			continue
		}
		live, size := s.packUsage(pk)
		if live < size {
			cands = append(cands, usage{pk, live, size})
		}
	}
	// Deadest first: most space back for the least copying.
	slices.SortFunc(cands, func(a, b usage) int {
		return cmp.Compare(a.live*b.size, b.live*a.size)
	})
	for _, c := range cands {
		if target >= 0 && s.deadBytes() <= target {
			return
		}
		if target < 0 && c.live*2 > c.size {
			continue
		}
		if c.live > 0 {
			s.compactPack(c.pk)
			if live, _ := s.packUsage(c.pk); live > 0 {
				continue // blobs busy right now; next time
			}
		}
		if err := s.packs.remove(c.pk); err != nil {
			s.log.Warn("remove empty pack", "pack", c.pk.id, "err", err)
			continue
		}
		s.index.packGone(c.size)
	}
}

func (s *Store) packUsage(pk *pack) (live, size int64) {
	s.index.mu.Lock()
	live = pk.live
	s.index.mu.Unlock()
	s.packs.mu.Lock()
	size = pk.size
	s.packs.mu.Unlock()
	return live, size
}

// compactPack copies the live blobs of pk to the active pack.
func (s *Store) compactPack(old *pack) {
	entries := s.index.inPack(old)
	for len(entries) > 0 {
		var chunk []entry
		var n int64
		for len(entries) > 0 && (len(chunk) == 0 || n+entries[0].stored <= compactBatchBytes) {
			chunk = append(chunk, entries[0])
			n += entries[0].stored
			entries = entries[1:]
		}
		if err := s.moveBlobs(old, chunk); err != nil {
			s.log.Warn("compact pack", "pack", old.id, "err", err)
			return
		}
	}
}

// moveBlobs copies entries from old to the active pack and points their
// metadata and index entries at the copies. Each blob's slot is held while
// its metadata changes, so evictions and access-time flushes never see a
// half-moved blob.
func (s *Store) moveBlobs(old *pack, chunk []entry) error {
	var data [][]byte
	var moving []entry
	var held []func()
	defer func() {
		for _, done := range held {
			done()
		}
	}()
	for _, e := range chunk {
		done, busy := s.puts.try(e.d.Hash)
		if busy {
			continue
		}
		held = append(held, done)
		cur := s.index.current(e.d)
		if cur == nil || cur.pk != old {
			continue
		}
		b, err := s.packs.read(old.id, cur.off, cur.stored)
		if err != nil {
			return err
		}
		data = append(data, b)
		moving = append(moving, *cur)
	}
	if len(moving) == 0 {
		return nil
	}
	pk, offs, err := s.packs.appendBlobs(data)
	if err != nil {
		return err
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for i := range moving {
		moving[i].pk, moving[i].off = pk, offs[i]
		if err := wb.Set(metaKey(moving[i].d.Hash), moving[i].meta()); err != nil {
			s.index.addDead(totalStored(moving))
			return err
		}
	}
	if err := wb.Flush(); err != nil {
		s.index.addDead(totalStored(moving))
		return err
	}
	for i := range moving {
		if !s.index.move(moving[i].d, old, pk, offs[i]) {
			s.index.addDead(moving[i].stored)
		}
	}
	return nil
}

func totalStored(es []entry) int64 {
	var n int64
	for _, e := range es {
		n += e.stored
	}
	return n
}
