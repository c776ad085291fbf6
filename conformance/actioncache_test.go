package conformance

import (
	"bytes"
	"context"
	"encoding/hex"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/mound-build/mound/cas/digest"
)

// newAction uploads a Command and an Action of unique content and returns
// the Action's digest. The input root is the empty Directory, which is the
// empty blob.
func (c *client) newAction(t testing.TB) digest.Digest {
	t.Helper()
	cmdData, cmdDigest, err := digest.OfMessage(&repb.Command{
		Arguments:   []string{"/bin/echo", hex.EncodeToString(randomBlob(t, 16).data)},
		OutputPaths: []string{"out/one", "out/two", "out/dir"},
	})
	if err != nil {
		t.Fatal(err)
	}
	actionData, actionDigest, err := digest.OfMessage(&repb.Action{
		CommandDigest:   cmdDigest.Proto(),
		InputRootDigest: digest.Empty.Proto(),
	})
	if err != nil {
		t.Fatal(err)
	}
	c.upload(t, blob{data: cmdData, d: cmdDigest}, blob{data: actionData, d: actionDigest})
	return actionDigest
}

func (c *client) getResult(ctx context.Context, action digest.Digest, inline func(*repb.GetActionResultRequest)) (*repb.ActionResult, error) {
	req := &repb.GetActionResultRequest{InstanceName: c.instance, ActionDigest: action.Proto()}
	if inline != nil {
		inline(req)
	}
	return c.ac.GetActionResult(ctx, req)
}

func (c *client) updateResult(ctx context.Context, action digest.Digest, r *repb.ActionResult) (*repb.ActionResult, error) {
	return c.ac.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{
		InstanceName: c.instance, ActionDigest: action.Proto(), ActionResult: r,
	})
}

// mustUpdate stores r for action and fails unless the server accepts it.
func (c *client) mustUpdate(t testing.TB, action digest.Digest, r *repb.ActionResult) {
	t.Helper()
	if _, err := c.updateResult(rpcContext(t), action, r); err != nil {
		t.Fatalf("UpdateActionResult %v: %v", action, err)
	}
}

// actionOutputs is an ActionResult with every kind of referenced blob:
// stdout, stderr, two output files and an output directory whose Tree holds
// one more file.
type actionOutputs struct {
	result *repb.ActionResult
	blobs  map[string]blob // by role: stdout, stderr, one, two, tree, dirfile
}

func newActionOutputs(t testing.TB) actionOutputs {
	t.Helper()
	o := actionOutputs{blobs: map[string]blob{
		"stdout":  randomBlob(t, 100),
		"stderr":  randomBlob(t, 50),
		"one":     randomBlob(t, 200),
		"two":     randomBlob(t, 300),
		"dirfile": randomBlob(t, 400),
	}}
	treeData, treeDigest, err := digest.OfMessage(&repb.Tree{
		Root: &repb.Directory{Files: []*repb.FileNode{{Name: "f", Digest: o.blobs["dirfile"].pb()}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	o.blobs["tree"] = blob{data: treeData, d: treeDigest}
	o.result = &repb.ActionResult{
		OutputFiles: []*repb.OutputFile{
			{Path: "out/one", Digest: o.blobs["one"].pb(), IsExecutable: true},
			{Path: "out/two", Digest: o.blobs["two"].pb()},
		},
		OutputDirectories: []*repb.OutputDirectory{{Path: "out/dir", TreeDigest: treeDigest.Proto()}},
		StdoutDigest:      o.blobs["stdout"].pb(),
		StderrDigest:      o.blobs["stderr"].pb(),
	}
	return o
}

// all returns every blob the result references.
func (o actionOutputs) all() []blob { return o.except("") }

// except returns the blobs of o but the one in role.
func (o actionOutputs) except(role string) []blob {
	var bs []blob
	for r, b := range o.blobs {
		if r != role {
			bs = append(bs, b)
		}
	}
	return bs
}

// wantSameResult fails unless got is want, apart from execution_metadata,
// which a server may fill in.
func wantSameResult(t testing.TB, what string, got, want *repb.ActionResult) {
	t.Helper()
	got, want = proto.Clone(got).(*repb.ActionResult), proto.Clone(want).(*repb.ActionResult)
	got.ExecutionMetadata, want.ExecutionMetadata = nil, nil
	if !proto.Equal(got, want) {
		t.Errorf("%s:\ngot  %v\nwant %v", what, got, want)
	}
}

func TestActionCache(t *testing.T) {
	t.Parallel()
	c := defaultClient(t)

	t.Run("UnknownActionNotFound", func(t *testing.T) {
		_, err := c.getResult(rpcContext(t), c.newAction(t), nil)
		wantCode(t, "GetActionResult of an action never updated", err, codes.NotFound)
	})
	t.Run("UpdateThenGet", func(t *testing.T) {
		o := newActionOutputs(t)
		o.result.ExitCode = 3
		c.upload(t, o.all()...)
		action := c.newAction(t)
		stored, err := c.updateResult(rpcContext(t), action, o.result)
		if err != nil {
			t.Fatalf("UpdateActionResult: %v", err)
		}
		wantSameResult(t, "UpdateActionResult's answer", stored, o.result)
		got, err := c.getResult(rpcContext(t), action, nil)
		if err != nil {
			t.Fatalf("GetActionResult after UpdateActionResult: %v", err)
		}
		wantSameResult(t, "GetActionResult after UpdateActionResult", got, o.result)
	})
	t.Run("InstancesKeptApart", func(t *testing.T) {
		a, b := newClient(t, *instanceAFlag), newClient(t, *instanceBFlag)
		o := newActionOutputs(t)
		// The outputs are in both instances' CAS, so that only the AC
		// entry can make the difference.
		a.upload(t, o.all()...)
		b.upload(t, o.all()...)
		action := a.newAction(t)
		a.mustUpdate(t, action, o.result)
		if _, err := a.getResult(rpcContext(t), action, nil); err != nil {
			t.Fatalf("GetActionResult in %q, where it was updated: %v", a.instance, err)
		}
		_, err := b.getResult(rpcContext(t), action, nil)
		wantCode(t, "GetActionResult in "+b.instance+" of a result updated in "+a.instance, err, codes.NotFound)
	})
	t.Run("Inline", func(t *testing.T) {
		o := newActionOutputs(t)
		c.upload(t, o.all()...)
		action := c.newAction(t)
		c.mustUpdate(t, action, o.result)
		got, err := c.getResult(rpcContext(t), action, func(r *repb.GetActionResultRequest) {
			r.InlineStdout, r.InlineStderr, r.InlineOutputFiles = true, true, []string{"out/one"}
		})
		if err != nil {
			t.Fatalf("GetActionResult with inlining: %v", err)
		}
		if !bytes.Equal(got.GetStdoutRaw(), o.blobs["stdout"].data) {
			t.Errorf("inline_stdout: stdout_raw has %d bytes, want the %d of stdout", len(got.GetStdoutRaw()), o.blobs["stdout"].d.Size)
		}
		if !bytes.Equal(got.GetStderrRaw(), o.blobs["stderr"].data) {
			t.Errorf("inline_stderr: stderr_raw has %d bytes, want the %d of stderr", len(got.GetStderrRaw()), o.blobs["stderr"].d.Size)
		}
		if digestString(got.GetStdoutDigest()) != o.blobs["stdout"].d.String() || digestString(got.GetStderrDigest()) != o.blobs["stderr"].d.String() {
			t.Errorf("inlining changed stdout_digest or stderr_digest: %v, %v", got.GetStdoutDigest(), got.GetStderrDigest())
		}
		files := map[string]*repb.OutputFile{}
		for _, f := range got.GetOutputFiles() {
			files[f.GetPath()] = f
		}
		if one := files["out/one"]; !bytes.Equal(one.GetContents(), o.blobs["one"].data) || digestString(one.GetDigest()) != o.blobs["one"].d.String() {
			t.Errorf("inline_output_files [out/one]: out/one has %d bytes of contents and digest %v, want %d bytes and %v",
				len(one.GetContents()), one.GetDigest(), o.blobs["one"].d.Size, o.blobs["one"].d)
		}
		// The proto: "The server SHOULD NOT inline file contents unless
		// requested".
		if n := len(files["out/two"].GetContents()); n != 0 {
			t.Errorf("out/two was not asked to be inlined but has %d bytes of contents", n)
		}
	})
	t.Run("NotInlinedUnlessAsked", func(t *testing.T) {
		o := newActionOutputs(t)
		c.upload(t, o.all()...)
		action := c.newAction(t)
		c.mustUpdate(t, action, o.result)
		got, err := c.getResult(rpcContext(t), action, nil)
		if err != nil {
			t.Fatalf("GetActionResult: %v", err)
		}
		if len(got.GetStdoutRaw()) != 0 || len(got.GetStderrRaw()) != 0 {
			t.Errorf("stdout_raw (%d bytes) or stderr_raw (%d bytes) set without being asked for", len(got.GetStdoutRaw()), len(got.GetStderrRaw()))
		}
		for _, f := range got.GetOutputFiles() {
			if len(f.GetContents()) != 0 {
				t.Errorf("%s: %d bytes of contents without being asked for", f.GetPath(), len(f.GetContents()))
			}
		}
	})
	for _, role := range []string{"one", "stdout", "stderr", "tree", "dirfile"} {
		t.Run("MissingOutputIsMiss/"+role, func(t *testing.T) {
			// A hit whose outputs are gone fails the build ("lost
			// inputs"), so the server must report a miss. It may also
			// refuse the update (FAILED_PRECONDITION).
			o := newActionOutputs(t)
			c.upload(t, o.except(role)...)
			action := c.newAction(t)
			if _, err := c.updateResult(rpcContext(t), action, o.result); err != nil {
				wantCode(t, "UpdateActionResult referencing an absent "+role+" blob", err, codes.FailedPrecondition)
			}
			_, err := c.getResult(rpcContext(t), action, nil)
			wantCode(t, "GetActionResult of a result whose "+role+" blob is not in the CAS", err, codes.NotFound)
			// Once the blob is there, the same result is a hit: the miss
			// was about that blob alone.
			c.upload(t, o.blobs[role])
			c.mustUpdate(t, action, o.result)
			if _, err := c.getResult(rpcContext(t), action, nil); err != nil {
				t.Errorf("GetActionResult after uploading the %s blob: %v", role, err)
			}
		})
	}
	for _, bad := range badDigests() {
		t.Run("InvalidDigest/Get/"+bad.name, func(t *testing.T) {
			_, err := c.ac.GetActionResult(rpcContext(t), &repb.GetActionResultRequest{InstanceName: c.instance, ActionDigest: bad.d})
			wantCode(t, "GetActionResult with "+bad.name, err, codes.InvalidArgument, bad.mentions...)
		})
		t.Run("InvalidDigest/Update/"+bad.name, func(t *testing.T) {
			_, err := c.ac.UpdateActionResult(rpcContext(t), &repb.UpdateActionResultRequest{
				InstanceName: c.instance, ActionDigest: bad.d, ActionResult: &repb.ActionResult{},
			})
			wantCode(t, "UpdateActionResult with "+bad.name, err, codes.InvalidArgument, bad.mentions...)
		})
	}
}
