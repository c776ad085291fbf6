package service

import (
	"container/list"
	"context"
	"errors"
	"strconv"
	"sync"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/cas/resource"
)

const (
	// defaultTreePage is the page size when the client leaves it to us.
	defaultTreePage = 1000
	// maxTreePageBytes keeps a GetTree response under clients' default
	// 4 MiB receive limit.
	maxTreePageBytes = 3 << 20
)

// GetTree implements repb.ContentAddressableStorageServer. It streams the
// whole tree from page_token on, in pages of at most page_size directories,
// in breadth-first order with each distinct directory once. A page's
// next_page_token is the position in that order where the next page starts,
// for a client resuming an aborted stream; the order of a root is cached, so
// resuming sees the same order.
func (s *CAS) GetTree(req *repb.GetTreeRequest, stream grpc.ServerStreamingServer[repb.GetTreeResponse]) error {
	ctx := stream.Context()
	if err := resource.ValidateInstance(req.GetInstanceName()); err != nil {
		return Status(err)
	}
	root, err := digest.FromProto(req.GetRootDigest())
	if err != nil {
		return invalid("root_digest: %v", err)
	}
	if req.GetPageSize() < 0 {
		return invalid("page_size %d is negative", req.GetPageSize())
	}
	start := 0
	if tok := req.GetPageToken(); tok != "" {
		if start, err = strconv.Atoi(tok); err != nil || start < 0 {
			return invalid("page_token %q was not issued by this server", tok)
		}
	}
	pageSize := int(req.GetPageSize())
	if pageSize == 0 {
		pageSize = defaultTreePage
	}
	order, first, err := s.treeOrder(ctx, root)
	if err != nil {
		return Status(err)
	}
	if start > len(order) {
		return invalid("page_token %q is past the end of the tree", req.GetPageToken())
	}
	for i := start; ; {
		resp := &repb.GetTreeResponse{}
		size := 0
		for ; i < len(order) && len(resp.Directories) < pageSize && size < maxTreePageBytes; i++ {
			dir := first[order[i]]
			if dir == nil {
				if dir, err = readDirectory(ctx, s.opts.Blobs, order[i]); errors.Is(err, cas.ErrNotFound) {
					continue // evicted since the order was computed
				} else if err != nil {
					return Status(err)
				}
			}
			resp.Directories = append(resp.Directories, dir)
			size += proto.Size(dir)
		}
		if i < len(order) {
			resp.NextPageToken = strconv.Itoa(i)
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
		if resp.NextPageToken == "" {
			return nil
		}
	}
}

// treeOrder returns root's directories in breadth-first order. When it had
// to read them, it also returns them by digest.
func (s *CAS) treeOrder(ctx context.Context, root digest.Digest) ([]digest.Digest, map[digest.Digest]*repb.Directory, error) {
	if order := s.trees.get(root); order != nil {
		return order, nil, nil
	}
	dirs := map[digest.Digest]*repb.Directory{}
	order := []digest.Digest{root}
	for i := 0; i < len(order); i++ {
		dir, err := readDirectory(ctx, s.opts.Blobs, order[i])
		if errors.Is(err, cas.ErrNotFound) && i > 0 {
			// REAPI: the part of a tree that is missing is left out.
			order = append(order[:i], order[i+1:]...)
			i--
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		dirs[order[i]] = dir
		for _, sub := range dir.GetDirectories() {
			d, err := digest.FromProto(sub.GetDigest())
			if err != nil {
				return nil, nil, err
			}
			if _, seen := dirs[d]; !seen {
				dirs[d] = nil
				order = append(order, d)
			}
		}
	}
	s.trees.put(root, order)
	return order, dirs, nil
}

func readDirectory(ctx context.Context, g cas.BlobGetter, d digest.Digest) (*repb.Directory, error) {
	b, err := cas.ReadAll(ctx, g, d)
	if err != nil {
		return nil, err
	}
	dir := &repb.Directory{}
	if err := proto.Unmarshal(b, dir); err != nil {
		return nil, invalid("directory %v is not a Directory message: %v", d, err)
	}
	return dir, nil
}

// treeOrders caches the breadth-first order of recently listed trees.
type treeOrders struct {
	mu    sync.Mutex
	lru   *list.List                      // of treeOrder, front most recent; guarded by mu
	roots map[digest.Digest]*list.Element // guarded by mu
}

type treeOrderEntry struct {
	root  digest.Digest
	order []digest.Digest
}

// maxTreeOrders bounds the cache: one entry per client paging a tree at the
// same time is plenty.
const maxTreeOrders = 64

func newTreeOrders() *treeOrders {
	return &treeOrders{lru: list.New(), roots: map[digest.Digest]*list.Element{}}
}

func (t *treeOrders) get(root digest.Digest) []digest.Digest {
	t.mu.Lock()
	defer t.mu.Unlock()
	if el, ok := t.roots[root]; ok {
		t.lru.MoveToFront(el)
		return el.Value.(treeOrderEntry).order
	}
	return nil
}

func (t *treeOrders) put(root digest.Digest, order []digest.Digest) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.roots[root]; ok {
		return
	}
	t.roots[root] = t.lru.PushFront(treeOrderEntry{root, order})
	for t.lru.Len() > maxTreeOrders {
		el := t.lru.Back()
		t.lru.Remove(el)
		delete(t.roots, el.Value.(treeOrderEntry).root)
	}
}
