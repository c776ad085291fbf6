package fuseinput

import "time"

// Access is what an action did to its tree: the dependencies it really had
// and the changes it made. Paths are relative to the input root, sorted,
// each once; an input is named by the path it had in the input tree.
type Access struct {
	// Read are the inputs the action opened or whose symlink it read.
	Read []string
	// Missing are paths the action looked up that did not exist.
	Missing []string
	// Listed are the directories whose entries the action listed.
	Listed []string
	// Written are files the action opened for writing or truncated;
	// Created the entries it made; Deleted those it removed; Chmodded
	// those whose mode it changed (paths as they were at the time).
	Written, Created, Deleted, Chmodded []string
	// Renamed are the renames, in the order they happened.
	Renamed []Rename
	// FetchBlocked is the time the action's requests waited for
	// directories and files to arrive from the CAS, summed over requests.
	FetchBlocked time.Duration
	// Prefetched counts files fetched ahead from TreeOptions.Prefetch.
	Prefetched int
}

// Rename is one rename of the action.
type Rename struct{ From, To string }

// accessLog collects an Access; the tree's mu guards it.
type accessLog struct {
	read, missing, listed               map[string]struct{}
	written, created, deleted, chmodded map[string]struct{}
	renamed                             []Rename
	blocked                             time.Duration
	prefetched                          int
}

func newAccessLog() accessLog {
	return accessLog{
		read: map[string]struct{}{}, missing: map[string]struct{}{}, listed: map[string]struct{}{},
		written: map[string]struct{}{}, created: map[string]struct{}{}, deleted: map[string]struct{}{}, chmodded: map[string]struct{}{},
	}
}

// add records p in set; "" (an entry no longer in the tree) is dropped.
func add(set map[string]struct{}, p string) {
	if p != "" {
		set[p] = struct{}{}
	}
}

func (a *accessLog) snapshot() Access {
	return Access{
		Read: sortedKeys(a.read), Missing: sortedKeys(a.missing), Listed: sortedKeys(a.listed),
		Written: sortedKeys(a.written), Created: sortedKeys(a.created), Deleted: sortedKeys(a.deleted),
		Chmodded: sortedKeys(a.chmodded), Renamed: append([]Rename(nil), a.renamed...),
		FetchBlocked: a.blocked, Prefetched: a.prefetched,
	}
}
