package cas_test

import (
	"context"
	"errors"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/cas/memstore"
)

func store(t *testing.T, s *memstore.Store, data []byte) digest.Digest {
	t.Helper()
	d := digest.OfBytes(data)
	if errs := cas.PutBatch(context.Background(), s, []cas.Blob{{Digest: d, Data: data}}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	return d
}

// TestCompleteActionCache removes each blob an AC entry references in turn
// and checks the entry becomes a miss every time.
func TestCompleteActionCache(t *testing.T) {
	ctx := context.Background()
	s := memstore.New()
	ac := cas.CompleteActionCache{ActionCache: s, Blobs: s}
	file := store(t, s, []byte("an output file"))
	stdout := store(t, s, []byte("stdout"))
	nested := store(t, s, []byte("a file inside an output directory"))
	tree := &repb.Tree{
		Root:     &repb.Directory{Directories: []*repb.DirectoryNode{{Name: "sub", Digest: digest.OfBytes([]byte("x")).Proto()}}},
		Children: []*repb.Directory{{Files: []*repb.FileNode{{Name: "f", Digest: nested.Proto()}}}},
	}
	treeBytes, treeDigest, err := digest.OfMessage(tree)
	if err != nil {
		t.Fatal(err)
	}
	store(t, s, treeBytes)
	key := cas.ActionKey{Action: digest.OfBytes([]byte("action"))}
	err = s.UpdateActionResult(ctx, key, &repb.ActionResult{
		OutputFiles:       []*repb.OutputFile{{Path: "a", Digest: file.Proto()}},
		OutputDirectories: []*repb.OutputDirectory{{Path: "d", TreeDigest: treeDigest.Proto()}},
		StdoutDigest:      stdout.Proto(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ac.GetActionResult(ctx, key); err != nil {
		t.Fatalf("complete entry: %v", err)
	}
	for _, gone := range []digest.Digest{nested, treeDigest, stdout, file} {
		s.Delete(gone)
		if _, err := ac.GetActionResult(ctx, key); !errors.Is(err, cas.ErrNotFound) {
			t.Fatalf("entry with %v deleted: %v, want ErrNotFound", gone, err)
		}
		switch gone {
		case nested:
			store(t, s, []byte("a file inside an output directory"))
		case treeDigest:
			store(t, s, treeBytes)
		case stdout:
			store(t, s, []byte("stdout"))
		}
	}
}
