package conformance

import (
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"

	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/cas/resource"
)

// TestEmptyBlob checks that "servers MUST behave as though empty blobs are
// always available, even if they have not been uploaded", and that uploading
// it anyway works. It is the only test that is not parallel: Go runs it to
// the end before any parallel test goes on, so on a freshly started server
// the NeverUploaded cases really see an empty blob nobody has uploaded. (A
// server holding data of earlier runs may have it stored; they then pass
// for that reason.)
func TestEmptyBlob(t *testing.T) {
	c := defaultClient(t)
	empty := newBlobOf(nil)

	reads := func(t *testing.T) {
		t.Run("FindMissingBlobs", func(t *testing.T) {
			absent := absentDigest(t, 20)
			got := c.missing(t, digest.Empty, absent)
			if got[digest.Empty] {
				t.Errorf("the empty blob is reported missing")
			}
			if !got[absent] {
				t.Errorf("absent blob %v not reported missing", absent)
			}
		})
		t.Run("BatchReadBlobs", func(t *testing.T) {
			resp, err := c.cas.BatchReadBlobs(rpcContext(t), &repb.BatchReadBlobsRequest{
				InstanceName: c.instance, Digests: []*repb.Digest{empty.pb()},
			})
			if err != nil {
				t.Fatalf("BatchReadBlobs: %v", err)
			}
			if len(resp.GetResponses()) != 1 {
				t.Fatalf("BatchReadBlobs of one digest: %d responses", len(resp.GetResponses()))
			}
			r := resp.GetResponses()[0]
			wantStatus(t, "BatchReadBlobs of the empty blob", r.GetStatus(), codes.OK)
			if len(r.GetData()) != 0 || digestString(r.GetDigest()) != digest.Empty.String() {
				t.Errorf("BatchReadBlobs of the empty blob: %d bytes for digest %v", len(r.GetData()), r.GetDigest())
			}
		})
		t.Run("ByteStreamRead", func(t *testing.T) {
			got, _, err := c.read(rpcContext(t), &bspb.ReadRequest{ResourceName: c.readName(digest.Empty, resource.Identity)})
			if err != nil || len(got) != 0 {
				t.Errorf("Read of the empty blob: %d bytes, error %v; want 0 bytes, no error", len(got), err)
			}
		})
		t.Run("CompressedRead", func(t *testing.T) {
			if got := c.readCompressed(t, digest.Empty, 0); len(got) != 0 {
				t.Errorf("compressed Read of the empty blob: %d bytes decompressed", len(got))
			}
		})
	}

	t.Run("NeverUploaded", func(t *testing.T) {
		reads(t)
		t.Run("ActionResultWithEmptyOutputsIsHit", func(t *testing.T) {
			// A result whose outputs are all empty references only blobs
			// that are always present: it is complete.
			r := &repb.ActionResult{
				OutputFiles:  []*repb.OutputFile{{Path: "out/empty", Digest: empty.pb()}},
				StdoutDigest: empty.pb(),
				StderrDigest: empty.pb(),
			}
			action := c.newAction(t)
			c.mustUpdate(t, action, r)
			got, err := c.getResult(rpcContext(t), action, nil)
			if err != nil {
				t.Fatalf("GetActionResult of a result with only empty outputs: %v", err)
			}
			wantSameResult(t, "GetActionResult", got, r)
		})
	})
	t.Run("Upload", func(t *testing.T) {
		t.Run("BatchUpdateBlobs", func(t *testing.T) {
			c.upload(t, empty)
		})
		t.Run("ByteStreamWrite", func(t *testing.T) {
			c.writeBlob(t, empty, writeChunk)
		})
		t.Run("CompressedWrite", func(t *testing.T) {
			// The blob is present, so the server may end the write at
			// once; either way it must not fail.
			if _, err := c.writeCompressed(t, empty, zstdCompress(t, nil), writeChunk); err != nil {
				t.Errorf("compressed Write of the empty blob: %v", err)
			}
		})
	})
	t.Run("AfterUpload", reads)
}
