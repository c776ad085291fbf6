package outputs

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"golang.org/x/sync/errgroup"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
)

// Limits of hashing and uploading. Each bounds a fan-out or the memory it
// holds.
const (
	// smallBlobBytes is the largest blob read whole into memory and sent
	// in a batch; larger files are streamed from disk. Most outputs
	// (object files, headers, small archives) are smaller, and batching is
	// what makes many small outputs fast on a remote CAS.
	smallBlobBytes = 1 << 20

	// groupBytes is the content of one group of small blobs handed to
	// cas.PutBatch: a few of a remote server's batch messages, so that it
	// can pipeline them.
	groupBytes = 8 << 20

	// transferParallelism is how many groups or streamed files are sent at
	// once. With groupBytes per group it bounds memory at 32 MiB, and it
	// keeps a few requests in flight to hide network round trips.
	transferParallelism = 4
)

// hashParallelism is how many files are hashed at once: SHA-256 keeps a core
// busy, so one per core, and at least two so that one file's disk reads
// overlap another's hashing.
var hashParallelism = max(2, runtime.GOMAXPROCS(0))

// hashFiles hashes every recorded file once, except those whose digest the
// view knows. A known digest whose size is not the file's is not trusted:
// the file is hashed.
func (c *collector) hashFiles(ctx context.Context) error {
	eg, ctx := errgroup.WithContext(ctx)
	eg.SetLimit(hashParallelism)
	for _, f := range c.order {
		if c.known != nil {
			if d, ok := c.known.KnownDigest(f.name); ok && d.Size == f.size {
				f.d = d
				continue
			}
		}
		eg.Go(func() error {
			if err := ctx.Err(); err != nil {
				return err
			}
			r, err := c.view.Open(f.name)
			if err != nil {
				return err
			}
			defer r.Close()
			if f.d, err = digest.OfReader(r); err != nil {
				return fmt.Errorf("hash %s: %w", f.name, err)
			}
			return nil
		})
	}
	return eg.Wait()
}

// upload is the set of blobs an ActionResult references.
type upload struct {
	view  View
	files map[digest.Digest]*file  // one file for each content
	msgs  map[digest.Digest][]byte // serialized Directory and Tree messages
	order []digest.Digest          // keys of files and msgs, once each
}

func newUpload(c *collector) *upload {
	return &upload{view: c.view, files: map[digest.Digest]*file{}, msgs: map[digest.Digest][]byte{}}
}

func (u *upload) has(d digest.Digest) bool {
	_, isFile := u.files[d]
	_, isMsg := u.msgs[d]
	return isFile || isMsg
}

func (u *upload) addFile(f *file) {
	if !u.has(f.d) {
		u.files[f.d] = f
		u.order = append(u.order, f.d)
	}
}

func (u *upload) addMessage(d digest.Digest, b []byte) {
	if !u.has(d) {
		u.msgs[d] = b
		u.order = append(u.order, d)
	}
}

// addTree encodes the directory s and adds its Tree and Directory messages.
// The caller sets the returned OutputDirectory's path.
func (u *upload) addTree(s *scanned) (*repb.OutputDirectory, error) {
	t, err := encodeTree(s)
	if err != nil {
		return nil, err
	}
	// The Directory messages too, so that clients can also fetch the
	// directory by root_directory_digest (with GetTree, say).
	for d, b := range t.dirs {
		u.addMessage(d, b)
	}
	u.addMessage(t.treeDigest, t.tree)
	return &repb.OutputDirectory{
		TreeDigest:            t.treeDigest.Proto(),
		IsTopologicallySorted: true,
		RootDirectoryDigest:   t.root.Proto(),
	}, nil
}

// run asks store once which blobs it lacks and sends those: small ones in
// groups through cas.PutBatch, large files streamed from disk.
func (u *upload) run(ctx context.Context, store Store) error {
	if len(u.order) == 0 {
		return nil
	}
	missing, err := store.FindMissing(ctx, u.order)
	if err != nil {
		return fmt.Errorf("find missing outputs: %w", err)
	}
	eg, ctx := errgroup.WithContext(ctx)
	eg.SetLimit(transferParallelism)
	var group []digest.Digest
	var groupSize int64
	flush := func() {
		if len(group) > 0 {
			g := group
			eg.Go(func() error { return u.putGroup(ctx, store, g) })
		}
		group, groupSize = nil, 0
	}
	for _, d := range missing {
		if f, ok := u.files[d]; ok && d.Size > smallBlobBytes {
			eg.Go(func() error { return u.putFile(ctx, store, f) })
			continue
		}
		if groupSize+d.Size > groupBytes {
			flush()
		}
		group = append(group, d)
		groupSize += d.Size
	}
	flush()
	return eg.Wait()
}

// putGroup reads the blobs ds into memory and stores them with one
// cas.PutBatch. A message larger than groupBytes (the Tree of a huge
// directory) is a group of its own; the store streams it as it sees fit.
func (u *upload) putGroup(ctx context.Context, store Store, ds []digest.Digest) error {
	blobs := make([]cas.Blob, len(ds))
	for i, d := range ds {
		data, ok := u.msgs[d]
		if !ok {
			var err error
			if data, err = u.readFile(u.files[d].name); err != nil {
				return err
			}
		}
		blobs[i] = cas.Blob{Digest: d, Data: data}
	}
	for i, err := range cas.PutBatch(ctx, store, blobs) {
		if err != nil {
			return fmt.Errorf("upload %s: %w", u.describe(ds[i]), err)
		}
	}
	return nil
}

// readFile reads the small file name whole.
func (u *upload) readFile(name string) ([]byte, error) {
	r, err := u.view.Open(name)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return b, nil
}

// putFile streams a large file to the store.
func (u *upload) putFile(ctx context.Context, store Store, f *file) error {
	r, err := u.view.Open(f.name)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := store.Put(ctx, f.d, r); err != nil {
		return fmt.Errorf("upload %s: %w", f.name, err)
	}
	return nil
}

// describe names a blob for errors.
func (u *upload) describe(d digest.Digest) string {
	if f, ok := u.files[d]; ok {
		return fmt.Sprintf("%s (%v)", f.name, d)
	}
	return fmt.Sprintf("message %v", d)
}

// UploadFile stores the regular file at path in store, unless store has it,
// and returns its digest: for an action's stdout and stderr. The file must
// not change meanwhile; the store verifies what it receives.
func UploadFile(ctx context.Context, store Store, path string) (digest.Digest, error) {
	f, err := os.Open(path)
	if err != nil {
		return digest.Digest{}, err
	}
	defer f.Close()
	d, err := digest.OfReader(f)
	if err != nil {
		return digest.Digest{}, fmt.Errorf("hash %s: %w", path, err)
	}
	missing, err := store.FindMissing(ctx, []digest.Digest{d})
	if err != nil {
		return digest.Digest{}, fmt.Errorf("upload %s: %w", path, err)
	}
	if len(missing) == 0 {
		return d, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return digest.Digest{}, err
	}
	if err := store.Put(ctx, d, f); err != nil {
		return digest.Digest{}, fmt.Errorf("upload %s: %w", path, err)
	}
	return d, nil
}
