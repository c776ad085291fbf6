package badgerstore

import (
	"path/filepath"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
)

// Key prefixes in Badger. Each prefix is one byte followed by a fixed or
// self-delimiting suffix, so prefixes never collide.
const (
	prefixMeta   = 'm' // m + hash: entry metadata (see entry.meta)
	prefixAction = 'a' // a + instance + 0 + hash: serialized ActionResult
)

func metaKey(h digest.Hash) []byte { return append([]byte{prefixMeta}, h[:]...) }

func actionKey(k cas.ActionKey) []byte {
	b := make([]byte, 0, 2+len(k.Instance)+digest.HashSize+8)
	b = append(b, prefixAction)
	b = append(b, k.Instance...)
	b = append(b, 0)
	b = append(b, k.Action.Hash[:]...)
	// The size is part of the action's identity too.
	return append(b, byte(k.Action.Size>>56), byte(k.Action.Size>>48), byte(k.Action.Size>>40),
		byte(k.Action.Size>>32), byte(k.Action.Size>>24), byte(k.Action.Size>>16),
		byte(k.Action.Size>>8), byte(k.Action.Size))
}

// blobPath is where a file-backed blob lives: blobs/ab/abcdef....
func (s *Store) blobPath(h digest.Hash, enc encoding) string {
	name := h.String()
	if enc == fileZstd {
		name += ".zst"
	}
	return filepath.Join(s.blobs, name[:2], name)
}
