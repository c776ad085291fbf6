package outputs

import (
	"fmt"
	"io/fs"
	"path"
	"slices"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/mound-build/mound/cas/digest"
)

// scanned is an output directory as found in the view, each list in name
// order (REAPI requires Directory entries sorted by name).
type scanned struct {
	files []namedFile
	dirs  []namedDir
	links []*repb.SymlinkNode
}

type namedFile struct {
	name string
	file *file
}

type namedDir struct {
	name string
	dir  *scanned
}

// scan reads the directory name and everything under it. Symlinks are
// recorded, not followed.
func (c *collector) scan(name string) (*scanned, error) {
	entries, err := c.view.ReadDir(name)
	if err != nil {
		return nil, err
	}
	s := &scanned{}
	for _, e := range entries {
		child := path.Join(name, e.Name())
		switch t := e.Type(); {
		case t&fs.ModeSymlink != 0:
			target, err := c.view.Readlink(child)
			if err != nil {
				return nil, err
			}
			s.links = append(s.links, &repb.SymlinkNode{Name: e.Name(), Target: target})
		case t.IsDir():
			sub, err := c.scan(child)
			if err != nil {
				return nil, err
			}
			s.dirs = append(s.dirs, namedDir{e.Name(), sub})
		case t.IsRegular():
			info, err := c.view.Lstat(child)
			if err != nil {
				return nil, err
			}
			s.files = append(s.files, namedFile{e.Name(), c.addFile(child, info)})
		default:
			return nil, fmt.Errorf("%s is a %v, which REAPI cannot represent", child, t)
		}
	}
	return s, nil
}

// encodedTree is an output directory as REAPI blobs.
type encodedTree struct {
	tree       []byte // the serialized Tree
	treeDigest digest.Digest
	root       digest.Digest            // of the top Directory message
	dirs       map[digest.Digest][]byte // every Directory message, serialized
}

// encodeTree builds the Tree of s, whose files must be hashed. Its children
// are the distinct Directory messages below the root in topological order
// (every parent before its children: the reverse of a depth-first
// post-order), so the Tree qualifies as is_topologically_sorted, and the
// same directory gives the same Tree bytes every time. Deterministic
// serialization writes the root as the first record (tag 0x0a) and each
// child as a further one (0x12), the encoding that flag promises.
func encodeTree(s *scanned) (*encodedTree, error) {
	t := &encodedTree{dirs: map[digest.Digest][]byte{}}
	var post []*repb.Directory // distinct messages, children first
	var encode func(s *scanned) (digest.Digest, error)
	encode = func(s *scanned) (digest.Digest, error) {
		dir := &repb.Directory{Symlinks: s.links}
		for _, f := range s.files {
			dir.Files = append(dir.Files, &repb.FileNode{Name: f.name, Digest: f.file.d.Proto(), IsExecutable: f.file.exec})
		}
		for _, sub := range s.dirs {
			sd, err := encode(sub.dir)
			if err != nil {
				return digest.Digest{}, err
			}
			dir.Directories = append(dir.Directories, &repb.DirectoryNode{Name: sub.name, Digest: sd.Proto()})
		}
		b, d, err := digest.OfMessage(dir)
		if err != nil {
			return digest.Digest{}, err
		}
		if _, seen := t.dirs[d]; !seen {
			t.dirs[d] = b
			post = append(post, dir)
		}
		return d, nil
	}
	root, err := encode(s)
	if err != nil {
		return nil, err
	}
	t.root = root
	// The root finishes last, and cannot also be one of its descendants.
	children := slices.Clone(post[:len(post)-1])
	slices.Reverse(children)
	t.tree, t.treeDigest, err = digest.OfMessage(&repb.Tree{Root: post[len(post)-1], Children: children})
	if err != nil {
		return nil, err
	}
	return t, nil
}
