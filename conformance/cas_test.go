package conformance

import (
	"bytes"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"

	"github.com/mound-build/mound/cas/digest"
)

func TestFindMissingBlobs(t *testing.T) {
	t.Parallel()
	c := defaultClient(t)

	t.Run("ReturnsExactlyTheMissingSubset", func(t *testing.T) {
		present := []blob{randomBlob(t, 10), randomBlob(t, 1000), randomBlob(t, 1)}
		c.upload(t, present...)
		absent := []digest.Digest{absentDigest(t, 10), absentDigest(t, 1000), absentDigest(t, 1)}
		var ask []digest.Digest
		for i := range present {
			ask = append(ask, present[i].d, absent[i])
		}
		got := c.missing(t, ask...)
		for _, d := range absent {
			if !got[d] {
				t.Errorf("absent blob %v not reported missing", d)
			}
		}
		for _, b := range present {
			if got[b.d] {
				t.Errorf("uploaded blob %v reported missing", b.d)
			}
		}
	})
	t.Run("NoDigests", func(t *testing.T) {
		if got := c.missing(t); len(got) != 0 {
			t.Errorf("FindMissingBlobs of nothing reported %v", got)
		}
	})
	for _, bad := range badDigests() {
		t.Run("InvalidDigest/"+bad.name, func(t *testing.T) {
			// One bad digest among good ones fails the whole call: there
			// is no per-digest status in the response.
			_, err := c.cas.FindMissingBlobs(rpcContext(t), &repb.FindMissingBlobsRequest{
				InstanceName: c.instance,
				BlobDigests:  []*repb.Digest{absentDigest(t, 5).Proto(), bad.d},
			})
			wantCode(t, "FindMissingBlobs with "+bad.name, err, codes.InvalidArgument, bad.mentions...)
		})
	}
}

func TestBatchUpdateBlobs(t *testing.T) {
	t.Parallel()
	c := defaultClient(t)

	t.Run("StoresBlobs", func(t *testing.T) {
		blobs := []blob{randomBlob(t, 1), randomBlob(t, 100), randomBlob(t, 64<<10)}
		c.upload(t, blobs...)
		for _, b := range blobs {
			c.wantPresent(t, b.d)
			if got := c.readBlob(t, b.d); !bytes.Equal(got, b.data) {
				t.Errorf("Read %v after BatchUpdateBlobs: %d different bytes", b.d, len(got))
			}
		}
	})
	t.Run("AlreadyPresent", func(t *testing.T) {
		b := randomBlob(t, 50)
		c.upload(t, b)
		c.upload(t, b)
	})
	t.Run("MismatchFailsOnlyThatBlob", func(t *testing.T) {
		good1, good2 := randomBlob(t, 30), randomBlob(t, 40)
		wrongHash := randomBlob(t, 30)
		wrongHash.d = absentDigest(t, 30) // same size, other content
		wrongSize := randomBlob(t, 30)
		wrongSize.d.Size = 31
		tooShort := randomBlob(t, 30)
		tooShort.d.Size = 29
		req := &repb.BatchUpdateBlobsRequest{InstanceName: c.instance}
		for _, b := range []blob{good1, wrongHash, wrongSize, tooShort, good2} {
			req.Requests = append(req.Requests, &repb.BatchUpdateBlobsRequest_Request{Digest: b.pb(), Data: b.data})
		}
		resp, err := c.cas.BatchUpdateBlobs(rpcContext(t), req)
		if err != nil {
			t.Fatalf("BatchUpdateBlobs: %v (bad content must fail only its own blob)", err)
		}
		got := map[digest.Digest]*repb.BatchUpdateBlobsResponse_Response{}
		for _, r := range resp.GetResponses() {
			d, err := digest.FromProto(r.GetDigest())
			if err != nil {
				t.Fatalf("response for invalid digest %v", r.GetDigest())
			}
			got[d] = r
		}
		if len(resp.GetResponses()) != len(req.Requests) || len(got) != len(req.Requests) {
			t.Fatalf("%d requests, %d responses for %d digests", len(req.Requests), len(resp.GetResponses()), len(got))
		}
		for _, b := range []blob{good1, good2} {
			wantStatus(t, "good blob "+b.d.String(), got[b.d].GetStatus(), codes.OK)
		}
		for _, b := range []blob{wrongHash, wrongSize, tooShort} {
			wantStatus(t, "mismatched blob "+b.d.String(), got[b.d].GetStatus(), codes.InvalidArgument, b.d.Hash.String(), "size")
		}
		c.wantPresent(t, good1.d, good2.d)
		c.wantMissing(t, wrongHash.d, wrongSize.d, tooShort.d)
	})
	for _, bad := range badDigests() {
		t.Run("InvalidDigest/"+bad.name, func(t *testing.T) {
			// The proto lists INVALID_ARGUMENT both for the call and
			// per blob; either place is accepted, the good blob must not
			// be reported as failed.
			good := randomBlob(t, 5)
			resp, err := c.cas.BatchUpdateBlobs(rpcContext(t), &repb.BatchUpdateBlobsRequest{
				InstanceName: c.instance,
				Requests: []*repb.BatchUpdateBlobsRequest_Request{
					{Digest: good.pb(), Data: good.data},
					{Digest: bad.d, Data: []byte("abc")},
				},
			})
			if err != nil {
				wantCode(t, "BatchUpdateBlobs with "+bad.name, err, codes.InvalidArgument, bad.mentions...)
				return
			}
			if len(resp.GetResponses()) != 2 {
				t.Fatalf("2 requests, %d responses", len(resp.GetResponses()))
			}
			for _, r := range resp.GetResponses() {
				if digestString(r.GetDigest()) == good.d.String() {
					wantStatus(t, "good blob", r.GetStatus(), codes.OK)
				} else {
					wantStatus(t, bad.name, r.GetStatus(), codes.InvalidArgument, bad.mentions...)
				}
			}
		})
	}
}

func TestBatchReadBlobs(t *testing.T) {
	t.Parallel()
	c := defaultClient(t)
	blobs := []blob{randomBlob(t, 1), randomBlob(t, 333), randomBlob(t, 100<<10)}
	c.upload(t, blobs...)

	// batchRead reads ds and returns each response by digest.
	batchRead := func(t *testing.T, ds ...digest.Digest) map[digest.Digest]*repb.BatchReadBlobsResponse_Response {
		t.Helper()
		req := &repb.BatchReadBlobsRequest{InstanceName: c.instance}
		for _, d := range ds {
			req.Digests = append(req.Digests, d.Proto())
		}
		resp, err := c.cas.BatchReadBlobs(rpcContext(t), req)
		if err != nil {
			t.Fatalf("BatchReadBlobs: %v", err)
		}
		got := map[digest.Digest]*repb.BatchReadBlobsResponse_Response{}
		for _, r := range resp.GetResponses() {
			d, err := digest.FromProto(r.GetDigest())
			if err != nil {
				t.Fatalf("response for invalid digest %v", r.GetDigest())
			}
			got[d] = r
		}
		if len(resp.GetResponses()) != len(ds) || len(got) != len(ds) {
			t.Fatalf("BatchReadBlobs of %d digests: %d responses for %d digests", len(ds), len(resp.GetResponses()), len(got))
		}
		return got
	}

	t.Run("ReturnsUploadedBlobs", func(t *testing.T) {
		got := batchRead(t, blobs[0].d, blobs[1].d, blobs[2].d)
		for _, b := range blobs {
			r := got[b.d]
			wantStatus(t, "blob "+b.d.String(), r.GetStatus(), codes.OK)
			if !bytes.Equal(r.GetData(), b.data) {
				t.Errorf("blob %v: got %d bytes, not the uploaded ones", b.d, len(r.GetData()))
			}
		}
	})
	t.Run("AbsentBlobNotFound", func(t *testing.T) {
		absent := absentDigest(t, 77)
		got := batchRead(t, blobs[1].d, absent)
		wantStatus(t, "absent blob", got[absent].GetStatus(), codes.NotFound)
		wantStatus(t, "present blob", got[blobs[1].d].GetStatus(), codes.OK)
		if !bytes.Equal(got[blobs[1].d].GetData(), blobs[1].data) {
			t.Errorf("present blob next to an absent one: wrong content")
		}
	})
	for _, bad := range badDigests() {
		t.Run("InvalidDigest/"+bad.name, func(t *testing.T) {
			resp, err := c.cas.BatchReadBlobs(rpcContext(t), &repb.BatchReadBlobsRequest{
				InstanceName: c.instance,
				Digests:      []*repb.Digest{blobs[0].pb(), bad.d},
			})
			if err != nil {
				wantCode(t, "BatchReadBlobs with "+bad.name, err, codes.InvalidArgument, bad.mentions...)
				return
			}
			for _, r := range resp.GetResponses() {
				if digestString(r.GetDigest()) != blobs[0].d.String() {
					wantStatus(t, bad.name, r.GetStatus(), codes.InvalidArgument, bad.mentions...)
				}
			}
			if len(resp.GetResponses()) != 2 {
				t.Errorf("2 digests, %d responses", len(resp.GetResponses()))
			}
		})
	}
}
