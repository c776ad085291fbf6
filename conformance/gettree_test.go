package conformance

import (
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/mound-build/mound/cas/digest"
)

// treePageSize is small so that the test tree spans several pages.
const treePageSize = 2

// testTree is a directory tree stored as Directory blobs.
type testTree struct {
	root digest.Digest
	dirs map[digest.Digest]string // every directory of the tree, with its path
}

// makeTree builds this three-level tree of seven directories, each holding
// a file of unique content so that no two directories share a digest:
//
//	root/{a/{a1,a2}, b/{b1}, c}
//
// skip names directories that are left out of the CAS; they and their
// descendants are left out of dirs.
func makeTree(t *testing.T, c *client, skip ...string) testTree {
	t.Helper()
	tree := testTree{dirs: map[digest.Digest]string{}}
	var blobs []blob
	var dir func(path string, children ...string) *repb.DirectoryNode
	dir = func(path string, children ...string) *repb.DirectoryNode {
		d := &repb.Directory{Files: []*repb.FileNode{{Name: "file", Digest: randomBlob(t, 16).pb()}}}
		for _, child := range children {
			d.Directories = append(d.Directories, dir(path+"/"+child, childrenOf(child)...))
		}
		data, dg, err := digest.OfMessage(d)
		if err != nil {
			t.Fatal(err)
		}
		if !skipped(path, skip) {
			blobs = append(blobs, blob{data: data, d: dg})
			tree.dirs[dg] = path
		}
		return &repb.DirectoryNode{Name: path[strings.LastIndex(path, "/")+1:], Digest: dg.Proto()}
	}
	root := dir("root", "a", "b", "c")
	tree.root, _ = digest.FromProto(root.Digest)
	c.upload(t, blobs...)
	return tree
}

func skipped(path string, skip []string) bool {
	for _, s := range skip {
		if path == s || strings.HasPrefix(path, s+"/") {
			return true
		}
	}
	return false
}

func childrenOf(name string) []string {
	switch name {
	case "a":
		return []string{"a1", "a2"}
	case "b":
		return []string{"b1"}
	}
	return nil
}

// getTree reads one GetTree stream from pageToken on and returns the
// directories of each response and the last next_page_token. stopAfter > 0
// stops reading after that many responses.
func (c *client) getTree(t *testing.T, root digest.Digest, pageToken string, stopAfter int) ([][]*repb.Directory, string, error) {
	t.Helper()
	stream, err := c.cas.GetTree(rpcContext(t), &repb.GetTreeRequest{
		InstanceName: c.instance,
		RootDigest:   root.Proto(),
		PageSize:     treePageSize,
		PageToken:    pageToken,
	})
	if err != nil {
		return nil, "", err
	}
	var pages [][]*repb.Directory
	next := ""
	for stopAfter <= 0 || len(pages) < stopAfter {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return pages, next, err
		}
		pages = append(pages, resp.GetDirectories())
		next = resp.GetNextPageToken()
	}
	return pages, next, nil
}

// collectTree reads the whole tree: it follows next_page_token across
// calls, for servers that end the stream after a page as well as for those
// that stream every page, and fails on a page larger than treePageSize.
func (c *client) collectTree(t *testing.T, root digest.Digest, pageToken string) []*repb.Directory {
	t.Helper()
	var all []*repb.Directory
	for calls := 0; ; calls++ {
		if calls > 100 {
			t.Fatalf("GetTree: still a next_page_token after %d calls", calls)
		}
		pages, next, err := c.getTree(t, root, pageToken, 0)
		if err != nil {
			t.Fatalf("GetTree page_token %q: %v", pageToken, err)
		}
		for _, p := range pages {
			if len(p) > treePageSize {
				t.Errorf("GetTree page of %d directories, page_size is %d", len(p), treePageSize)
			}
			all = append(all, p...)
		}
		if next == "" {
			return all
		}
		pageToken = next
	}
}

// wantDirs fails unless got holds each directory of want exactly once, and
// nothing else.
func wantDirs(t *testing.T, got []*repb.Directory, want map[digest.Digest]string) {
	t.Helper()
	seen := map[digest.Digest]int{}
	for _, d := range got {
		_, dg, err := digest.OfMessage(d)
		if err != nil {
			t.Fatal(err)
		}
		seen[dg]++
		if _, ok := want[dg]; !ok {
			t.Errorf("GetTree returned a directory not in the tree: %v", d)
		}
	}
	for dg, path := range want {
		if seen[dg] != 1 {
			t.Errorf("directory %s (%v) returned %d times, want once", path, dg, seen[dg])
		}
	}
}

func TestGetTree(t *testing.T) {
	t.Parallel()
	c := defaultClient(t)

	t.Run("PagedTreeEveryDirectoryOnce", func(t *testing.T) {
		tree := makeTree(t, c)
		wantDirs(t, c.collectTree(t, tree.root, ""), tree.dirs)
	})
	t.Run("ResumeFromPageToken", func(t *testing.T) {
		// A client that lost the stream after the first page continues
		// with its next_page_token and gets the rest, nothing twice.
		tree := makeTree(t, c)
		first, next, err := c.getTree(t, tree.root, "", 1)
		if err != nil {
			t.Fatalf("GetTree: %v", err)
		}
		if len(first) != 1 || next == "" {
			t.Fatalf("GetTree of %d directories with page_size %d: first response has %d directories and next_page_token %q; want a token",
				len(tree.dirs), treePageSize, len(slices.Concat(first...)), next)
		}
		if len(first[0]) > treePageSize {
			t.Errorf("GetTree page of %d directories, page_size is %d", len(first[0]), treePageSize)
		}
		wantDirs(t, append(slices.Clone(first[0]), c.collectTree(t, tree.root, next)...), tree.dirs)
	})
	t.Run("MissingRootNotFound", func(t *testing.T) {
		d := &repb.Directory{Files: []*repb.FileNode{{Name: "f", Digest: randomBlob(t, 8).pb()}}}
		b, err := proto.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = c.getTree(t, digest.OfBytes(b), "", 0)
		wantCode(t, "GetTree of an absent root", err, codes.NotFound)
	})
	t.Run("MissingSubtreeOmitted", func(t *testing.T) {
		// "If part of the tree is missing from the CAS, the server will
		// return the portion present and omit the rest."
		tree := makeTree(t, c, "root/b")
		wantDirs(t, c.collectTree(t, tree.root, ""), tree.dirs)
	})
	for _, bad := range badDigests() {
		t.Run("InvalidDigest/"+bad.name, func(t *testing.T) {
			stream, err := c.cas.GetTree(rpcContext(t), &repb.GetTreeRequest{InstanceName: c.instance, RootDigest: bad.d})
			if err == nil {
				_, err = stream.Recv()
			}
			wantCode(t, "GetTree with "+bad.name, err, codes.InvalidArgument, bad.mentions...)
		})
	}
}
