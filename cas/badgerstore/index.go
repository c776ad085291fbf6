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
	inlineRaw  encoding = iota // Badger value under dataKey, as is
	inlineZstd                 // Badger value under dataKey, one zstd stream
	fileRaw                    // file under blobs/, as is
	fileZstd                   // file under blobs/ with .zst, one zstd stream
)

func (e encoding) inFile() bool     { return e == fileRaw || e == fileZstd }
func (e encoding) compressed() bool { return e == inlineZstd || e == fileZstd }

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
}

func (e *entry) cost() int64 { return e.stored + entryOverhead }

// meta is the persisted form of an entry: encoding, size, stored size and
// access time.
func (e *entry) meta() []byte {
	b := make([]byte, 1, 1+3*binary.MaxVarintLen64)
	b[0] = byte(e.enc)
	b = binary.AppendUvarint(b, uint64(e.d.Size))
	b = binary.AppendUvarint(b, uint64(e.stored))
	return binary.AppendVarint(b, e.atime)
}

func parseMeta(h digest.Hash, b []byte) (*entry, error) {
	if len(b) < 4 || encoding(b[0]) > fileZstd {
		return nil, errors.New("bad metadata")
	}
	e := &entry{enc: encoding(b[0]), d: digest.Digest{Hash: h}}
	b = b[1:]
	var vals [3]int64
	for i := range vals {
		var n int
		if i < 2 {
			var u uint64
			u, n = binary.Uvarint(b)
			vals[i] = int64(u)
		} else {
			vals[i], n = binary.Varint(b)
		}
		if n <= 0 || vals[i] < 0 {
			return nil, fmt.Errorf("bad metadata field %d", i)
		}
		b = b[n:]
	}
	e.d.Size, e.stored, e.atime = vals[0], vals[1], vals[2]
	e.persisted = e.atime
	return e, nil
}

// index holds every stored blob in least-recently-used order.
type index struct {
	mu       sync.Mutex
	byHash   map[digest.Hash]*list.Element // of *entry; guarded by mu
	lru      *list.List                    // front is most recently used; guarded by mu
	total    int64                         // sum of cost(); guarded by mu
	reserved int64                         // bytes promised to puts in progress; guarded by mu
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
	return true
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
	x.total -= e.cost()
	return e
}

// reserve promises n bytes to a put in progress. When max > 0 and the store
// would exceed it, it returns the least recently used entries whose removal
// makes room (the caller evicts them); it fails when even an empty store
// could not hold n.
func (x *index) reserve(n, max int64) ([]*entry, error) {
	n += entryOverhead
	x.mu.Lock()
	defer x.mu.Unlock()
	if max > 0 && n > max {
		return nil, fmt.Errorf("blob of %d bytes exceeds the store's maximum size of %d", n, max)
	}
	x.reserved += n
	var victims []*entry
	for max > 0 && x.total+x.reserved > max && x.lru.Len() > 0 {
		el := x.lru.Back()
		e := el.Value.(*entry)
		x.lru.Remove(el)
		delete(x.byHash, e.d.Hash)
		x.total -= e.cost()
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
	return x.lru.Len(), x.total
}
