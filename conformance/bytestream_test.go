package conformance

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/cas/resource"
)

const (
	// writeChunk is the data size of one WriteRequest in multi-request
	// uploads: small, so that test blobs take several requests.
	writeChunk = 32 << 10
	// maxReadChunk is Bazel's default gRPC receive limit: a ReadResponse
	// must stay below it.
	maxReadChunk = 4 << 20
	// earlyFinishTimeout is how long a write of a present blob may wait
	// before the server ends it; the REAPI says it ends "immediately".
	earlyFinishTimeout = 5 * time.Second
)

func TestByteStreamWrite(t *testing.T) {
	t.Parallel()
	c := defaultClient(t)

	t.Run("WholeBlobInOneRequest", func(t *testing.T) {
		b := randomBlob(t, 1000)
		c.writeBlob(t, b, len(b.data))
		c.wantPresent(t, b.d)
		if got := c.readBlob(t, b.d); !bytes.Equal(got, b.data) {
			t.Errorf("Read after Write: %d bytes, not the written ones", len(got))
		}
	})
	t.Run("ChunkedResourceNameOnlyInFirstRequest", func(t *testing.T) {
		b := randomBlob(t, 300<<10)
		c.writeBlob(t, b, writeChunk)
		if got := c.readBlob(t, b.d); !bytes.Equal(got, b.data) {
			t.Errorf("Read after Write: %d bytes, not the written ones", len(got))
		}
	})
	t.Run("ResourceNameInEveryRequest", func(t *testing.T) {
		// ByteStream: later requests may repeat the name if it matches.
		b := randomBlob(t, 100<<10)
		name := c.writeName(b.d, resource.Identity)
		reqs := writeRequests(name, b.data, 0, writeChunk, true)
		for _, r := range reqs {
			r.ResourceName = name
		}
		resp, err := c.write(rpcContext(t), reqs)
		if err != nil || resp.GetCommittedSize() != b.d.Size {
			t.Fatalf("Write: committed_size %d, error %v; want %d, no error", resp.GetCommittedSize(), err, b.d.Size)
		}
		c.wantPresent(t, b.d)
	})
	t.Run("WrongContentInvalidArgument", func(t *testing.T) {
		b := randomBlob(t, 100<<10)
		claimed := absentDigest(t, len(b.data))
		name := c.writeName(claimed, resource.Identity)
		_, err := c.write(rpcContext(t), writeRequests(name, b.data, 0, writeChunk, true))
		wantCode(t, "Write of content that does not hash to the digest", err, codes.InvalidArgument, claimed.Hash.String())
		c.wantMissing(t, claimed, b.d)
	})
	t.Run("MoreBytesThanSizeInvalidArgument", func(t *testing.T) {
		b := randomBlob(t, 10<<10)
		claimed := digest.OfBytes(b.data[:len(b.data)-100])
		name := c.writeName(claimed, resource.Identity)
		_, err := c.write(rpcContext(t), writeRequests(name, b.data, 0, writeChunk, true))
		wantCode(t, "Write of more bytes than the digest's size", err, codes.InvalidArgument, claimed.Hash.String(), "size")
		c.wantMissing(t, claimed)
	})
	t.Run("FinishWriteWithFewerBytesInvalidArgument", func(t *testing.T) {
		b := randomBlob(t, 100<<10)
		name := c.writeName(b.d, resource.Identity)
		_, err := c.write(rpcContext(t), writeRequests(name, b.data[:60<<10], 0, writeChunk, true))
		wantCode(t, "Write with finish_write after too few bytes", err, codes.InvalidArgument, b.d.Hash.String(), "size")
		c.wantMissing(t, b.d)
	})
	t.Run("ClosedWithoutFinishWrite", func(t *testing.T) {
		// ByteStream: "When the client closes the request channel, the
		// service will respond with a WriteResponse" and will not view
		// the resource as complete. An error is accepted too; an OK
		// response must not claim the whole blob.
		b := randomBlob(t, 100<<10)
		name := c.writeName(b.d, resource.Identity)
		resp, err := c.write(rpcContext(t), writeRequests(name, b.data[:60<<10], 0, writeChunk, false))
		if err == nil && resp.GetCommittedSize() >= b.d.Size {
			t.Errorf("Write closed after 60 KiB of %d bytes without finish_write: OK with committed_size %d", b.d.Size, resp.GetCommittedSize())
		}
		c.wantMissing(t, b.d)
	})
	t.Run("WriteOffsetGap", func(t *testing.T) {
		b := randomBlob(t, 100<<10)
		reqs := writeRequests(c.writeName(b.d, resource.Identity), b.data, 0, writeChunk, true)
		reqs[2].WriteOffset += 10
		if _, err := c.write(rpcContext(t), reqs); status.Code(err) == codes.OK {
			t.Errorf("Write with a write_offset that skips 10 bytes succeeded")
		}
		c.wantMissing(t, b.d)
	})
	t.Run("AlreadyPresentFinishesEarly", func(t *testing.T) {
		// REAPI: a write of a blob already present "will terminate
		// immediately without error", with committed_size the blob's
		// size, whatever the client has sent so far. The stream is not
		// half-closed: the server must answer on its own.
		b := randomBlob(t, 200<<10)
		c.upload(t, b)
		stream, err := c.bs.Write(timeoutContext(t, earlyFinishTimeout))
		if err != nil {
			t.Fatal(err)
		}
		first := writeRequests(c.writeName(b.d, resource.Identity), b.data, 0, writeChunk, true)[0]
		if err := stream.Send(first); err != nil {
			t.Fatalf("Send: %v", err)
		}
		var resp bspb.WriteResponse
		if err := stream.RecvMsg(&resp); err != nil {
			t.Fatalf("Write of a present blob, %d of %d bytes sent: %v (want an early WriteResponse)", len(first.Data), b.d.Size, err)
		}
		if resp.GetCommittedSize() != b.d.Size {
			t.Errorf("early WriteResponse: committed_size %d, want %d", resp.GetCommittedSize(), b.d.Size)
		}
	})
	t.Run("AlreadyPresentFullUpload", func(t *testing.T) {
		b := randomBlob(t, 100<<10)
		c.upload(t, b)
		c.writeBlob(t, b, writeChunk)
	})
	t.Run("ConcurrentUploadsOfSameBlob", func(t *testing.T) {
		// REAPI: "Uploads of the same data MAY occur concurrently". The
		// two streams interleave: both have started before either
		// finishes. Each must end without error with the whole size
		// committed, the second possibly early.
		b := randomBlob(t, 200<<10)
		var streams [2]bspb.ByteStream_WriteClient
		var reqs [2][]*bspb.WriteRequest
		for i := range streams {
			stream, err := c.bs.Write(rpcContext(t))
			if err != nil {
				t.Fatal(err)
			}
			streams[i] = stream
			reqs[i] = writeRequests(c.writeName(b.d, resource.Identity), b.data, 0, writeChunk, true)
			if err := stream.Send(reqs[i][0]); err != nil {
				t.Fatalf("stream %d: Send: %v", i, err)
			}
		}
		for i, stream := range streams {
			resp, err := finishWrite(stream, reqs[i][1:])
			if err != nil || resp.GetCommittedSize() != b.d.Size {
				t.Errorf("stream %d: committed_size %d, error %v; want %d, no error", i, resp.GetCommittedSize(), err, b.d.Size)
			}
		}
		if got := c.readBlob(t, b.d); !bytes.Equal(got, b.data) {
			t.Errorf("Read after concurrent Writes: %d bytes, not the written ones", len(got))
		}
	})
	t.Run("UploadIDReusedForAnotherBlob", func(t *testing.T) {
		// REAPI: "Clients MAY reuse the same uuid for uploading
		// different blobs."
		id := uuid.NewString()
		for _, b := range []blob{randomBlob(t, 50<<10), randomBlob(t, 60<<10)} {
			name := resource.WriteName(c.instance, id, b.d, resource.Identity)
			resp, err := c.write(rpcContext(t), writeRequests(name, b.data, 0, writeChunk, true))
			if err != nil || resp.GetCommittedSize() != b.d.Size {
				t.Errorf("Write %s: committed_size %d, error %v; want %d, no error", name, resp.GetCommittedSize(), err, b.d.Size)
			}
			c.wantPresent(t, b.d)
		}
	})
	for _, bad := range badWriteNames(c) {
		t.Run("InvalidResourceName/"+bad.name, func(t *testing.T) {
			_, err := c.write(rpcContext(t), []*bspb.WriteRequest{{ResourceName: bad.resource, Data: []byte("hello"), FinishWrite: true}})
			wantCode(t, fmt.Sprintf("Write to %q", bad.resource), err, codes.InvalidArgument, bad.mentions...)
		})
	}
}

func TestByteStreamQueryWriteStatus(t *testing.T) {
	t.Parallel()
	c := defaultClient(t)

	query := func(t *testing.T, name string) (*bspb.QueryWriteStatusResponse, error) {
		return c.bs.QueryWriteStatus(rpcContext(t), &bspb.QueryWriteStatusRequest{ResourceName: name})
	}
	// resume completes the upload of b under name from offset on.
	resume := func(t *testing.T, name string, b blob, offset int64) {
		t.Helper()
		resp, err := c.write(rpcContext(t), writeRequests(name, b.data[offset:], offset, writeChunk, true))
		if err != nil {
			t.Fatalf("Write resuming at offset %d: %v", offset, err)
		}
		if resp.GetCommittedSize() != b.d.Size {
			t.Errorf("Write resuming at offset %d: committed_size %d, want %d", offset, resp.GetCommittedSize(), b.d.Size)
		}
		if got := c.readBlob(t, b.d); !bytes.Equal(got, b.data) {
			t.Errorf("Read after a resumed Write: %d bytes, not the written ones", len(got))
		}
	}
	const sent = 96 << 10

	t.Run("ResumeAfterStreamClosedWithoutFinish", func(t *testing.T) {
		b := randomBlob(t, 256<<10)
		name := c.writeName(b.d, resource.Identity)
		// The server's answer (a WriteResponse or an error) shows it has
		// seen the bytes, so QueryWriteStatus must know the upload.
		resp, werr := c.write(rpcContext(t), writeRequests(name, b.data[:sent], 0, writeChunk, false))
		q, err := query(t, name)
		if err != nil {
			t.Fatalf("QueryWriteStatus of an interrupted upload: %v", err)
		}
		if q.GetCommittedSize() < 0 || q.GetCommittedSize() > sent || q.GetComplete() {
			t.Fatalf("QueryWriteStatus after %d bytes: committed_size %d, complete %v; want 0..%d, false", sent, q.GetCommittedSize(), q.GetComplete(), sent)
		}
		if werr == nil && q.GetCommittedSize() < resp.GetCommittedSize() {
			t.Errorf("QueryWriteStatus committed_size %d is below the WriteResponse's %d", q.GetCommittedSize(), resp.GetCommittedSize())
		}
		resume(t, name, b, q.GetCommittedSize())
	})
	t.Run("ResumeAfterStreamCancelled", func(t *testing.T) {
		b := randomBlob(t, 256<<10)
		name := c.writeName(b.d, resource.Identity)
		ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
		stream, err := c.bs.Write(ctx)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		// Many small requests, so that the server is likely still working
		// through them when the cancellation and the query arrive.
		for _, r := range writeRequests(name, b.data[:sent], 0, 1<<10, false) {
			if err := stream.Send(r); err != nil {
				break
			}
		}
		cancel()
		// Nothing tells the client how far the server got before the
		// cancellation, so NOT_FOUND ("the first Write() has not yet
		// reached the service") means starting again at 0.
		var offset int64
		q, err := query(t, name)
		switch status.Code(err) {
		case codes.OK:
			if q.GetCommittedSize() < 0 || q.GetCommittedSize() > sent || q.GetComplete() {
				t.Fatalf("QueryWriteStatus after %d bytes: committed_size %d, complete %v; want 0..%d, false", sent, q.GetCommittedSize(), q.GetComplete(), sent)
			}
			offset = q.GetCommittedSize()
		case codes.NotFound:
		default:
			t.Fatalf("QueryWriteStatus of a cancelled upload: %v", err)
		}
		resume(t, name, b, offset)
	})
	t.Run("CompleteAfterUpload", func(t *testing.T) {
		b := randomBlob(t, 50<<10)
		name := c.writeName(b.d, resource.Identity)
		if _, err := c.write(rpcContext(t), writeRequests(name, b.data, 0, writeChunk, true)); err != nil {
			t.Fatalf("Write: %v", err)
		}
		q, err := query(t, name)
		if err != nil {
			t.Fatalf("QueryWriteStatus of a finished upload: %v", err)
		}
		if !q.GetComplete() || q.GetCommittedSize() != b.d.Size {
			t.Errorf("QueryWriteStatus of a finished upload: committed_size %d, complete %v; want %d, true", q.GetCommittedSize(), q.GetComplete(), b.d.Size)
		}
	})
	t.Run("NeverWrittenNotFound", func(t *testing.T) {
		// ByteStream: "If the resource does not exist ... this method
		// returns the error NOT_FOUND."
		name := c.writeName(absentDigest(t, 10), resource.Identity)
		_, err := query(t, name)
		wantCode(t, "QueryWriteStatus of an upload never started", err, codes.NotFound)
	})
	for _, bad := range badWriteNames(c) {
		t.Run("InvalidResourceName/"+bad.name, func(t *testing.T) {
			_, err := query(t, bad.resource)
			wantCode(t, fmt.Sprintf("QueryWriteStatus of %q", bad.resource), err, codes.InvalidArgument, bad.mentions...)
		})
	}
}

func TestByteStreamRead(t *testing.T) {
	t.Parallel()
	c := defaultClient(t)
	b := randomBlob(t, 100<<10)
	c.upload(t, b)
	name := c.readName(b.d, resource.Identity)
	size := b.d.Size

	ranges := []struct {
		name          string
		offset, limit int64
		want          []byte
	}{
		{"Whole", 0, 0, b.data},
		{"ReadOffset", 1000, 0, b.data[1000:]},
		{"ReadLimit", 0, 5000, b.data[:5000]},
		{"ReadOffsetAndLimit", 1000, 5000, b.data[1000:6000]},
		{"ReadLimitPastEnd", size - 10, 1000, b.data[size-10:]},
		{"LastByte", size - 1, 0, b.data[size-1:]},
		{"OffsetAtEndIsEmpty", size, 0, nil},
	}
	for _, r := range ranges {
		t.Run(r.name, func(t *testing.T) {
			got, _, err := c.read(rpcContext(t), &bspb.ReadRequest{ResourceName: name, ReadOffset: r.offset, ReadLimit: r.limit})
			if err != nil {
				t.Fatalf("Read offset %d limit %d: %v", r.offset, r.limit, err)
			}
			if !bytes.Equal(got, r.want) {
				t.Errorf("Read offset %d limit %d of %d bytes: got %d bytes, want %d (or wrong content)", r.offset, r.limit, size, len(got), len(r.want))
			}
		})
	}
	t.Run("OffsetPastEndOutOfRange", func(t *testing.T) {
		_, _, err := c.read(rpcContext(t), &bspb.ReadRequest{ResourceName: name, ReadOffset: size + 1})
		wantCode(t, "Read past the end", err, codes.OutOfRange)
	})
	t.Run("NegativeOffsetOutOfRange", func(t *testing.T) {
		_, _, err := c.read(rpcContext(t), &bspb.ReadRequest{ResourceName: name, ReadOffset: -1})
		wantCode(t, "Read at a negative offset", err, codes.OutOfRange)
	})
	t.Run("NegativeLimitFails", func(t *testing.T) {
		// ByteStream: "a negative read_limit will cause an error".
		if _, _, err := c.read(rpcContext(t), &bspb.ReadRequest{ResourceName: name, ReadLimit: -1}); status.Code(err) == codes.OK {
			t.Errorf("Read with read_limit -1 succeeded")
		}
	})
	t.Run("AbsentBlobNotFound", func(t *testing.T) {
		_, _, err := c.read(rpcContext(t), &bspb.ReadRequest{ResourceName: c.readName(absentDigest(t, 100), resource.Identity)})
		wantCode(t, "Read of an absent blob", err, codes.NotFound)
	})
	t.Run("LargeBlobChunksUnder4MiB", func(t *testing.T) {
		large := randomBlob(t, 10<<20)
		c.writeBlob(t, large, 1<<20)
		got, sizes, err := c.read(rpcContext(t), &bspb.ReadRequest{ResourceName: c.readName(large.d, resource.Identity)})
		if err != nil {
			t.Fatalf("Read of 10 MiB: %v", err)
		}
		if !bytes.Equal(got, large.data) {
			t.Errorf("Read of 10 MiB: %d bytes, not the written ones", len(got))
		}
		for i, n := range sizes {
			if n >= maxReadChunk {
				t.Errorf("ReadResponse %d carries %d bytes, want < %d", i, n, maxReadChunk)
			}
		}
	})
	for _, bad := range badReadNames(c) {
		t.Run("InvalidResourceName/"+bad.name, func(t *testing.T) {
			_, _, err := c.read(rpcContext(t), &bspb.ReadRequest{ResourceName: bad.resource})
			wantCode(t, fmt.Sprintf("Read of %q", bad.resource), err, codes.InvalidArgument, bad.mentions...)
		})
	}
}

// badName is a malformed resource name with the words an error message
// about it must contain one of (none: any non-empty message).
type badName struct {
	name, resource string
	mentions       []string
}

func badWriteNames(c *client) []badName {
	h := digest.OfBytes([]byte("hello")).Hash.String()
	up := "uploads/" + uuid.NewString() + "/"
	nonHex := strings.Repeat("g", 64)
	return []badName{
		{"Empty", "", nil},
		{"NoUploadsSegment", c.prefixed("blobs/" + h + "/5"), []string{"uploads", c.prefixed("blobs/" + h + "/5")}},
		{"NoBlobsSegment", c.prefixed(up + h + "/5"), []string{"blobs", c.prefixed(up + h + "/5")}},
		{"NonHexHash", c.prefixed(up + "blobs/" + nonHex + "/5"), []string{nonHex}},
		{"ShortHash", c.prefixed(up + "blobs/" + h[:20] + "/5"), []string{h[:20]}},
		{"NegativeSize", c.prefixed(up + "blobs/" + h + "/-5"), []string{"size", "-5"}},
		{"NonNumericSize", c.prefixed(up + "blobs/" + h + "/five"), []string{"size", "five"}},
		{"NoSize", c.prefixed(up + "blobs/" + h), []string{"size", c.prefixed(up + "blobs/" + h)}},
	}
}

func badReadNames(c *client) []badName {
	h := digest.OfBytes([]byte("hello")).Hash.String()
	nonHex := strings.Repeat("g", 64)
	return []badName{
		{"Empty", "", nil},
		{"NoBlobsSegment", c.prefixed(h + "/5"), []string{"blobs", c.prefixed(h + "/5")}},
		{"NonHexHash", c.prefixed("blobs/" + nonHex + "/5"), []string{nonHex}},
		{"ShortHash", c.prefixed("blobs/" + h[:20] + "/5"), []string{h[:20]}},
		{"NegativeSize", c.prefixed("blobs/" + h + "/-5"), []string{"size", "-5"}},
		{"NonNumericSize", c.prefixed("blobs/" + h + "/five"), []string{"size", "five"}},
		{"NoSize", c.prefixed("blobs/" + h), []string{"size", c.prefixed("blobs/" + h)}},
	}
}
