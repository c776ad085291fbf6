package badgerstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// packBytes is the size at which a pack file is closed and a new one
// started: large enough that there are few files, small enough (a 32nd of
// the store) that dead bytes in the pack being written stay few and one
// mostly dead pack is cheap to compact.
func packBytes(maxSize int64) int64 {
	if maxSize <= 0 {
		return 256 << 20
	}
	return min(max(maxSize/32, 64<<10), 256<<20)
}

// packs holds small blobs in append-only pack files. Writes append under a
// mutex with plain write(2) calls and are made durable by fdatasync shared
// among concurrent writers (group commit); reads are pread(2). A blob's
// place (pack, offset) is in its metadata; bytes no entry references (from
// evicted blobs, or from a crash before the metadata commit) are dead and
// reclaimed by compaction.
type packs struct {
	dir      string
	maxBytes int64 // see packBytes

	// appendMu serializes appends, from choosing where a batch goes
	// until its bytes are written, so that a pack's size only ever counts
	// bytes whose write has returned: a sync that covers the size then
	// covers them all. (Taken before mu.)
	appendMu sync.Mutex

	mu     sync.Mutex
	active *pack            // the pack appended to; guarded by mu
	byID   map[uint32]*pack // every pack, for reads; guarded by mu
	nextID uint32           // guarded by mu

	syncMu sync.Mutex // one fdatasync at a time; the others wait and reuse it
}

// pack is one pack file.
type pack struct {
	id     uint32
	f      *os.File
	size   int64 // bytes written (their writes returned); guarded by packs.mu
	synced int64 // bytes known durable; guarded by packs.syncMu
	live   int64 // bytes of blobs that entries reference; guarded by index.mu
}

func openPacks(dir string, maxBytes int64) (*packs, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p := &packs{dir: dir, maxBytes: maxBytes, byID: map[uint32]*pack{}}
	names, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		id, ok := packID(n.Name())
		if !ok {
			continue
		}
		f, err := os.Open(filepath.Join(dir, n.Name()))
		if err != nil {
			return nil, err
		}
		st, err := f.Stat()
		if err != nil {
			return nil, err
		}
		p.byID[id] = &pack{id: id, f: f, size: st.Size(), synced: st.Size()}
		p.nextID = max(p.nextID, id+1)
	}
	return p, nil
}

func packID(name string) (uint32, bool) {
	s, ok := strings.CutSuffix(name, ".pack")
	if !ok {
		return 0, false
	}
	id, err := strconv.ParseUint(s, 10, 32)
	return uint32(id), err == nil
}

func (p *packs) path(id uint32) string {
	return filepath.Join(p.dir, fmt.Sprintf("%08d.pack", id))
}

// appendBlobs writes the blobs one after another and makes them durable. It
// returns the pack they went to and the offset of each.
func (p *packs) appendBlobs(blobs [][]byte) (*pack, []int64, error) {
	var n int64
	for _, b := range blobs {
		n += int64(len(b))
	}
	p.appendMu.Lock()
	p.mu.Lock()
	pk, err := p.activeLocked(n)
	if err != nil {
		p.mu.Unlock()
		p.appendMu.Unlock()
		return nil, nil, err
	}
	start := pk.size
	p.mu.Unlock()
	offsets := make([]int64, len(blobs))
	off := start
	for i, b := range blobs {
		offsets[i] = off
		off += int64(len(b))
	}
	// One system call for the whole batch, straight from the blobs'
	// buffers. Only once it returned does the pack's size grow: a
	// concurrent sync that read the size earlier does not count these
	// bytes as synced. After a failed write the next append overwrites
	// whatever part of it reached the file.
	err = pwritev(pk.f, blobs, start)
	if err == nil {
		p.mu.Lock()
		pk.size = start + n
		p.mu.Unlock()
	}
	p.appendMu.Unlock()
	if err != nil {
		return nil, nil, fmt.Errorf("write %s: %w", pk.f.Name(), err)
	}
	if err := p.sync(pk, start+n); err != nil {
		return nil, nil, err
	}
	return pk, offsets, nil
}

// activeLocked returns the pack to append n bytes to, starting a new one
// when the current one is full.
func (p *packs) activeLocked(n int64) (*pack, error) {
	if p.active != nil && p.active.size+n <= p.maxBytes {
		return p.active, nil
	}
	id := p.nextID
	f, err := os.OpenFile(p.path(id), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syncDir(p.dir); err != nil {
		f.Close()
		return nil, err
	}
	p.nextID++
	pk := &pack{id: id, f: f}
	p.byID[id] = pk
	p.active = pk
	return pk, nil
}

// sync makes pk durable up to end. Writers that arrive while another's
// fdatasync runs wait for it and usually find their bytes covered.
func (p *packs) sync(pk *pack, end int64) error {
	p.syncMu.Lock()
	defer p.syncMu.Unlock()
	if pk.synced >= end {
		return nil
	}
	p.mu.Lock()
	size := pk.size
	p.mu.Unlock()
	if err := pk.f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", pk.f.Name(), err)
	}
	pk.synced = size
	return nil
}

// errPackGone means the pack was deleted by compaction after the reader
// looked the blob up; looking it up again finds its new place.
var errPackGone = errors.New("pack compacted away")

// read returns n bytes at off in pack id.
func (p *packs) read(id uint32, off, n int64) ([]byte, error) {
	buf := make([]byte, n)
	if err := p.readInto(id, off, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

// readInto fills buf with the bytes at off in pack id.
func (p *packs) readInto(id uint32, off int64, buf []byte) error {
	p.mu.Lock()
	pk := p.byID[id]
	p.mu.Unlock()
	if pk == nil {
		return errPackGone
	}
	if _, err := pk.f.ReadAt(buf, off); err != nil {
		if errors.Is(err, os.ErrClosed) {
			return errPackGone
		}
		return fmt.Errorf("read %s at %d: %w", pk.f.Name(), off, err)
	}
	return nil
}

// remove deletes a pack no entry references.
func (p *packs) remove(pk *pack) error {
	p.mu.Lock()
	if p.active == pk {
		p.active = nil
	}
	delete(p.byID, pk.id)
	p.mu.Unlock()
	pk.f.Close()
	return os.Remove(p.path(pk.id))
}

// list returns every pack.
func (p *packs) list() []*pack {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*pack, 0, len(p.byID))
	for _, pk := range p.byID {
		out = append(out, pk)
	}
	return out
}

func (p *packs) get(id uint32) *pack {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.byID[id]
}

func (p *packs) isActive(pk *pack) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.active == pk
}

func (p *packs) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pk := range p.byID {
		pk.f.Close()
	}
}

// maxIovecs is the most buffers one pwritev(2) takes (IOV_MAX on Linux).
const maxIovecs = 1024

// pwritev writes bufs one after another at off, looping over short writes.
func pwritev(f *os.File, bufs [][]byte, off int64) error {
	fd := int(f.Fd())
	for len(bufs) > 0 {
		batch := bufs[:min(len(bufs), maxIovecs)]
		n, err := unix.Pwritev(fd, batch, off)
		if err != nil {
			return err
		}
		off += int64(n)
		// Drop what was written, keeping a partly written buffer's rest.
		for n > 0 && len(bufs) > 0 {
			if n >= len(bufs[0]) {
				n -= len(bufs[0])
				bufs = bufs[1:]
			} else {
				bufs[0] = bufs[0][n:]
				n = 0
			}
		}
		for len(bufs) > 0 && len(bufs[0]) == 0 {
			bufs = bufs[1:]
		}
	}
	return nil
}
