package workerd

import (
	"container/list"
	"sync"

	"github.com/mound-build/mound/cas/digest"
)

// readSets remembers, for recent commands, the inputs their last run read
// (through the FUSE inputs), so that the next run of the same command,
// typically on changed inputs, fetches them all at once when it starts
// instead of one at a time as it opens them. Safe for concurrent use.
type readSets struct {
	maxPaths int // paths kept, over all commands

	mu    sync.Mutex
	paths int                             // guarded by mu
	lru   *list.List                      // of *readSet, most recent first; guarded by mu
	m     map[digest.Digest]*list.Element // by Command digest; guarded by mu
}

type readSet struct {
	command digest.Digest
	paths   []string
}

// defaultReadSetPaths bounds the paths readSets keeps: about 60 MiB of
// paths, the read sets of some thousands of compile actions.
const defaultReadSetPaths = 1_000_000

func newReadSets(maxPaths int) *readSets {
	return &readSets{maxPaths: maxPaths, lru: list.New(), m: map[digest.Digest]*list.Element{}}
}

// get returns the last read set of command, or nil. The caller must not
// modify it.
func (r *readSets) get(command digest.Digest) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.m[command]
	if !ok {
		return nil
	}
	r.lru.MoveToFront(e)
	return e.Value.(*readSet).paths
}

// put records paths as the read set of command's latest run. A set larger
// than the whole bound is not kept.
func (r *readSets) put(command digest.Digest, paths []string) {
	if len(paths) == 0 || len(paths) > r.maxPaths {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.m[command]; ok {
		r.paths -= len(e.Value.(*readSet).paths)
		r.lru.Remove(e)
	}
	r.m[command] = r.lru.PushFront(&readSet{command: command, paths: paths})
	r.paths += len(paths)
	for r.paths > r.maxPaths {
		e := r.lru.Back()
		rs := e.Value.(*readSet)
		r.lru.Remove(e)
		delete(r.m, rs.command)
		r.paths -= len(rs.paths)
	}
}
