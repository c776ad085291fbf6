package blobcache

import (
	"fmt"
	"os"

	"github.com/mound-build/mound/cas/digest"
)

// Has says whether the cache holds d's file in the given mode or is
// filling it, without fetching anything: either way, Path answers without
// a fetch of the caller's own.
func (c *Cache) Has(d digest.Digest, executable bool) bool {
	k := key{d, executable}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.entries[k]
	_, filling := c.inflight[k]
	return ok || filling
}

// Insert stores data as d's file in the given mode, unless the cache has
// it or is filling it already: for a caller that fetched a small blob's
// bytes itself (a lazy FUSE read serving them at once) and hands them over
// so that later requests find the file. data is checked against d with
// digest.Verifier like every fetch; a mismatch is an error wrapping
// digest.ErrMismatch and stores nothing.
func (c *Cache) Insert(d digest.Digest, executable bool, data []byte) error {
	v := digest.NewVerifier(d)
	v.Write(data)
	if err := v.Check(); err != nil {
		return fmt.Errorf("blob %v: %w", d, err)
	}
	k := key{d, executable}
	c.mu.Lock()
	if _, ok := c.entries[k]; ok {
		c.mu.Unlock()
		return nil
	}
	if _, ok := c.inflight[k]; ok {
		c.mu.Unlock()
		return nil
	}
	f := &fetch{done: make(chan struct{})}
	c.inflight[k] = f
	c.stats.Misses++
	c.mu.Unlock()

	f.err = c.write(k, data)
	if f.err != nil {
		c.mu.Lock()
		delete(c.inflight, k)
		c.mu.Unlock()
	}
	close(f.done)
	return f.err
}

// write creates k's file with data, as fill does from Remote.
func (c *Cache) write(k key, data []byte) (err error) {
	f, err := c.createTemp(k)
	if err != nil {
		return fmt.Errorf("blob %v: %w", k.d, err)
	}
	defer func() {
		if err != nil {
			os.Remove(f.Name())
		}
	}()
	_, werr := f.Write(data)
	mode := fileMode
	if k.exec {
		mode = execMode
	}
	cherr := f.Chmod(mode)
	cerr := f.Close()
	for _, e := range []error{werr, cherr, cerr} {
		if e != nil {
			return fmt.Errorf("blob %v: %w", k.d, e)
		}
	}
	return c.insert(k, f.Name())
}
