package badgerstore

import (
	"container/list"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/mound-build/mound/cas/digest"
)

// encoding says where and how a blob's content is kept.
type encoding byte

const (
	packRaw  encoding = iota // in a pack file, as is
	packZstd                 // in a pack file, one zstd stream
	fileRaw                  // file under blobs/, as is
	fileZstd                 // file under blobs/ with .zst, one zstd stream
)

func (e encoding) inFile() bool     { return e == fileRaw || e == fileZstd }
func (e encoding) compressed() bool { return e == packZstd || e == fileZstd }

// entryOverhead is what one blob costs beyond its content (metadata key and
// value, index entry); counting it keeps a store of many tiny blobs honest
// about its size.
const entryOverhead = 128

// entry is one blob in the in-memory index.
type entry struct {
	d         digest.Digest
	enc       encoding
	stored    int64 // bytes of content on disk (compressed size if compressed)
	atime     int64 // unix seconds of the last access
	persisted int64 // atime as last written to Badger
	// pk and off place a pack blob; they change when compaction moves it,
	// under index.mu.
	pk  *pack
	off int64
}

func (e *entry) cost() int64 { return e.stored + entryOverhead }

// meta is the persisted form of an entry: encoding, size, stored size,
// access time and, for pack blobs, pack id and offset.
func (e *entry) meta() []byte {
	b := make([]byte, 1, 1+5*binary.MaxVarintLen64)
	b[0] = byte(e.enc)
	b = binary.AppendUvarint(b, uint64(e.d.Size))
	b = binary.AppendUvarint(b, uint64(e.stored))
	b = binary.AppendVarint(b, e.atime)
	if !e.enc.inFile() {
		b = binary.AppendUvarint(b, uint64(e.pk.id))
		b = binary.AppendUvarint(b, uint64(e.off))
	}
	return b
}

// parseMeta reads meta; pack blobs come back with the pack id in off's
// place until load resolves it.
func parseMeta(h digest.Hash, b []byte) (e *entry, packID uint32, err error) {
	if len(b) < 4 || encoding(b[0]) > fileZstd {
		return nil, 0, errors.New("bad metadata")
	}
	e = &entry{enc: encoding(b[0]), d: digest.Digest{Hash: h}}
	b = b[1:]
	nvals := 3
	if !e.enc.inFile() {
		nvals = 5
	}
	vals := make([]int64, nvals)
	for i := range vals {
		var n int
		if i == 2 {
			vals[i], n = binary.Varint(b)
		} else {
			var u uint64
			u, n = binary.Uvarint(b)
			vals[i] = int64(u)
		}
		if n <= 0 || vals[i] < 0 {
			return nil, 0, fmt.Errorf("bad metadata field %d", i)
		}
		b = b[n:]
	}
	e.d.Size, e.stored, e.atime = vals[0], vals[1], vals[2]
	e.persisted = e.atime
	if nvals == 5 {
		packID, e.off = uint32(vals[3]), vals[4]
	}
	return e, packID, nil
}

// index holds every stored blob in least-recently-used order.
type index struct {
	mu       sync.Mutex
	byHash   map[digest.Hash]*list.Element // of *entry; guarded by mu
	lru      *list.List                    // front is most recently used; guarded by mu
	total    int64                         // sum of cost(); guarded by mu
	reserved int64                         // bytes promised to puts in progress; guarded by mu
	// dead is pack bytes no entry references (evicted, moved, or left by a
	// crash), until compaction deletes their pack; guarded by mu.
	dead int64
}

func newIndex() *index {
	return &index{byHash: map[digest.Hash]*list.Element{}, lru: list.New()}
}

// lookup returns the entry for d and marks it used, or nil. A blob stored
// under d's hash with another size is not d.
func (x *index) lookup(d digest.Digest) *entry {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.touchLocked(d, time.Now().Unix())
}

func (x *index) touchLocked(d digest.Digest, now int64) *entry {
	el, ok := x.byHash[d.Hash]
	if !ok {
		return nil
	}
	e := el.Value.(*entry)
	if e.d.Size != d.Size {
		return nil
	}
	x.lru.MoveToFront(el)
	e.atime = now
	return e
}

// missing returns the digests in ds absent from the index, each once, and
// marks the present ones used.
func (x *index) missing(ds []digest.Digest) []digest.Digest {
	var out []digest.Digest
	var seen map[digest.Digest]bool
	now := time.Now().Unix()
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, d := range ds {
		if d.IsEmpty() || x.touchLocked(d, now) != nil || seen[d] {
			continue
		}
		if seen == nil {
			seen = map[digest.Digest]bool{}
		}
		seen[d] = true
		out = append(out, d)
	}
	return out
}

// add inserts e (most recently used) unless its hash is present; it reports
// whether it inserted.
func (x *index) add(e *entry) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if _, ok := x.byHash[e.d.Hash]; ok {
		return false
	}
	x.byHash[e.d.Hash] = x.lru.PushFront(e)
	x.total += e.cost()
	if e.pk != nil {
		e.pk.live += e.stored
	}
	return true
}

// unlinkLocked accounts for e leaving the index.
func (x *index) unlinkLocked(e *entry) {
	x.total -= e.cost()
	if e.pk != nil {
		e.pk.live -= e.stored
		x.dead += e.stored
	}
}

// remove deletes the entry for h if present and returns it.
func (x *index) remove(h digest.Hash) *entry {
	x.mu.Lock()
	defer x.mu.Unlock()
	el, ok := x.byHash[h]
	if !ok {
		return nil
	}
	x.lru.Remove(el)
	delete(x.byHash, h)
	e := el.Value.(*entry)
	x.unlinkLocked(e)
	return e
}

// liveShare is how much of a store of max bytes live blobs may fill: the
// rest is for pack bytes that eviction freed and compaction has not yet
// reclaimed.
func liveShare(max int64) int64 { return max - max/8 }

// reserve promises n bytes to a put in progress. When max > 0 and the store
// would exceed it, it returns the least recently used entries whose removal
// makes room (the caller evicts them); it fails when even an empty store
// could not hold n.
func (x *index) reserve(n, max int64) ([]*entry, error) {
	n += entryOverhead
	x.mu.Lock()
	defer x.mu.Unlock()
	if max > 0 && n > liveShare(max) {
		return nil, fmt.Errorf("blob of %d bytes exceeds the store's maximum size of %d", n, max)
	}
	x.reserved += n
	var victims []*entry
	// Evicting a pack blob frees its space only once compaction rewrites
	// its pack, so live blobs are kept to liveShare of the store and the
	// rest is room for dead bytes, which makeRoom compacts away.
	for max > 0 && x.total+x.reserved > liveShare(max) && x.lru.Len() > 0 {
		el := x.lru.Back()
		e := el.Value.(*entry)
		x.lru.Remove(el)
		delete(x.byHash, e.d.Hash)
		x.unlinkLocked(e)
		victims = append(victims, e)
	}
	return victims, nil
}

// release returns a reservation of n bytes.
func (x *index) release(n int64) {
	x.mu.Lock()
	x.reserved -= n + entryOverhead
	x.mu.Unlock()
}

// dirty returns copies of entries whose access time moved by more than
// slack seconds since it was persisted, and marks them persisted. Entries
// are in access order, so the walk stops at the first one not used since
// the previous call (at since).
func (x *index) dirty(since, slack int64) []entry {
	x.mu.Lock()
	defer x.mu.Unlock()
	var out []entry
	for el := x.lru.Front(); el != nil; el = el.Next() {
		e := el.Value.(*entry)
		if e.atime < since {
			break
		}
		if e.atime-e.persisted > slack {
			e.persisted = e.atime
			out = append(out, *e)
		}
	}
	return out
}

func (x *index) stats() (int, int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.lru.Len(), x.total + x.dead
}

// inPack returns copies of the entries stored in pk.
func (x *index) inPack(pk *pack) []entry {
	x.mu.Lock()
	defer x.mu.Unlock()
	var out []entry
	for el := x.lru.Front(); el != nil; el = el.Next() {
		if e := el.Value.(*entry); e.pk == pk {
			out = append(out, *e)
		}
	}
	return out
}

// move records that compaction copied d from old to (pk, off), unless the
// blob was evicted or moved meanwhile; it reports whether it did.
func (x *index) move(d digest.Digest, old, pk *pack, off int64) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	el, ok := x.byHash[d.Hash]
	if !ok {
		return false
	}
	e := el.Value.(*entry)
	if e.pk != old {
		return false
	}
	old.live -= e.stored
	x.dead += e.stored
	e.pk, e.off = pk, off
	pk.live += e.stored
	return true
}

// packGone forgets the dead bytes of a deleted pack.
func (x *index) packGone(size int64) {
	x.mu.Lock()
	x.dead -= size
	x.mu.Unlock()
}

// addDead counts bytes no entry references, such as a crashed write's.
func (x *index) addDead(n int64) {
	x.mu.Lock()
	x.dead += n
	x.mu.Unlock()
}

// current returns a copy of d's entry as it is now, or nil.
func (x *index) current(d digest.Digest) *entry {
	x.mu.Lock()
	defer x.mu.Unlock()
	el, ok := x.byHash[d.Hash]
	if !ok || el.Value.(*entry).d != d {
		return nil
	}
	e := *el.Value.(*entry)
	return &e
}

// location returns where e is now, under the index lock.
func (x *index) location(e *entry) (*pack, int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return e.pk, e.off
}
