package conformance

import (
	"bytes"
	"testing"

	"github.com/klauspost/compress/zstd"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"

	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/cas/resource"
)

// zstdCompress returns data as one zstd frame.
func zstdCompress(t testing.TB, data []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(data, nil)
}

// zstdDecompress decodes a zstd stream of any number of frames.
func zstdDecompress(t testing.TB, compressed []byte) []byte {
	t.Helper()
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	data, err := dec.DecodeAll(compressed, nil)
	if err != nil {
		t.Fatalf("decompress %d bytes of zstd from the server: %v", len(compressed), err)
	}
	return data
}

// readCompressed reads d in compressed form from offset (in uncompressed
// bytes) on and returns it decompressed.
func (c *client) readCompressed(t testing.TB, d digest.Digest, offset int64) []byte {
	t.Helper()
	name := c.readName(d, resource.Zstd)
	compressed, _, err := c.read(rpcContext(t), &bspb.ReadRequest{ResourceName: name, ReadOffset: offset})
	if err != nil {
		t.Fatalf("Read %s offset %d: %v", name, offset, err)
	}
	return zstdDecompress(t, compressed)
}

// writeCompressed uploads b zstd-compressed in requests of at most chunk
// compressed bytes and returns the server's answer.
func (c *client) writeCompressed(t testing.TB, b blob, compressed []byte, chunk int) (*bspb.WriteResponse, error) {
	t.Helper()
	name := c.writeName(b.d, resource.Zstd)
	return c.write(rpcContext(t), writeRequests(name, compressed, 0, chunk, true))
}

func TestZstd(t *testing.T) {
	t.Parallel()
	c := defaultClient(t)

	t.Run("CompressedUploadReadBothForms", func(t *testing.T) {
		b := compressibleBlob(t, 1<<20)
		compressed := zstdCompress(t, b.data)
		// Several requests, each write_offset being the compressed bytes
		// sent before it.
		resp, err := c.writeCompressed(t, b, compressed, len(compressed)/4+1)
		if err != nil {
			t.Fatalf("compressed Write of %d bytes (%d compressed): %v", b.d.Size, len(compressed), err)
		}
		t.Logf("compressed Write: committed_size %d for %d compressed bytes of a %d byte blob", resp.GetCommittedSize(), len(compressed), b.d.Size)
		c.wantPresent(t, b.d)
		if got := c.readBlob(t, b.d); !bytes.Equal(got, b.data) {
			t.Errorf("uncompressed Read after compressed Write: %d bytes, not the written ones", len(got))
		}
		if got := c.readCompressed(t, b.d, 0); !bytes.Equal(got, b.data) {
			t.Errorf("compressed Read after compressed Write: %d bytes decompressed, not the written ones", len(got))
		}
	})
	t.Run("CompressedUploadInOneRequest", func(t *testing.T) {
		b := compressibleBlob(t, 10<<10)
		compressed := zstdCompress(t, b.data)
		if _, err := c.writeCompressed(t, b, compressed, len(compressed)); err != nil {
			t.Fatalf("compressed Write: %v", err)
		}
		if got := c.readBlob(t, b.d); !bytes.Equal(got, b.data) {
			t.Errorf("uncompressed Read after compressed Write: %d bytes, not the written ones", len(got))
		}
	})
	t.Run("UncompressedUploadCompressedRead", func(t *testing.T) {
		b := compressibleBlob(t, 300<<10)
		c.writeBlob(t, b, writeChunk)
		if got := c.readCompressed(t, b.d, 0); !bytes.Equal(got, b.data) {
			t.Errorf("compressed Read: %d bytes decompressed, not the written ones", len(got))
		}
	})
	t.Run("CompressedReadWithOffset", func(t *testing.T) {
		// REAPI: read_offset counts uncompressed bytes.
		b := compressibleBlob(t, 100<<10)
		c.upload(t, b)
		if got := c.readCompressed(t, b.d, 1000); !bytes.Equal(got, b.data[1000:]) {
			t.Errorf("compressed Read at offset 1000: %d bytes decompressed, want the %d from offset 1000", len(got), len(b.data)-1000)
		}
	})
	t.Run("CompressedReadLimitInvalidArgument", func(t *testing.T) {
		b := compressibleBlob(t, 10<<10)
		c.upload(t, b)
		_, _, err := c.read(rpcContext(t), &bspb.ReadRequest{ResourceName: c.readName(b.d, resource.Zstd), ReadLimit: 100})
		wantCode(t, "compressed Read with read_limit 100", err, codes.InvalidArgument, "limit")
	})
	t.Run("CompressedMismatchInvalidArgument", func(t *testing.T) {
		b := compressibleBlob(t, 100<<10)
		other := compressibleBlob(t, 100<<10)
		_, err := c.writeCompressed(t, b, zstdCompress(t, other.data), writeChunk)
		wantCode(t, "compressed Write whose content decompresses to another blob", err, codes.InvalidArgument, b.d.Hash.String())
		c.wantMissing(t, b.d, other.d)
	})
	t.Run("CompressedNotZstdInvalidArgument", func(t *testing.T) {
		b := compressibleBlob(t, 10<<10)
		_, err := c.writeCompressed(t, b, b.data, writeChunk)
		wantCode(t, "compressed Write of bytes that are not zstd", err, codes.InvalidArgument, "zstd", "compress", b.d.Hash.String())
		c.wantMissing(t, b.d)
	})
	t.Run("AlreadyPresentFinishesEarly", func(t *testing.T) {
		// REAPI: such a write ends at once with committed_size -1 when
		// it is compressed.
		b := compressibleBlob(t, 200<<10)
		c.upload(t, b)
		compressed := zstdCompress(t, b.data)
		stream, err := c.bs.Write(timeoutContext(t, earlyFinishTimeout))
		if err != nil {
			t.Fatal(err)
		}
		first := writeRequests(c.writeName(b.d, resource.Zstd), compressed, 0, writeChunk, true)[0]
		if err := stream.Send(first); err != nil {
			t.Fatalf("Send: %v", err)
		}
		var resp bspb.WriteResponse
		if err := stream.RecvMsg(&resp); err != nil {
			t.Fatalf("compressed Write of a present blob, %d of %d compressed bytes sent: %v (want an early WriteResponse)", len(first.Data), len(compressed), err)
		}
		if resp.GetCommittedSize() != -1 {
			t.Errorf("early WriteResponse of a compressed write: committed_size %d, want -1", resp.GetCommittedSize())
		}
	})
	t.Run("ConcurrentCompressedAndUncompressedUploads", func(t *testing.T) {
		// REAPI: "Uploads of the same data MAY occur concurrently in any
		// form, compressed or uncompressed."
		b := compressibleBlob(t, 300<<10)
		compressed := zstdCompress(t, b.data)
		var streams [2]bspb.ByteStream_WriteClient
		reqs := [2][]*bspb.WriteRequest{
			writeRequests(c.writeName(b.d, resource.Zstd), compressed, 0, writeChunk, true),
			writeRequests(c.writeName(b.d, resource.Identity), b.data, 0, writeChunk, true),
		}
		for i := range streams {
			stream, err := c.bs.Write(rpcContext(t))
			if err != nil {
				t.Fatal(err)
			}
			streams[i] = stream
			if err := stream.Send(reqs[i][0]); err != nil {
				t.Fatalf("stream %d: Send: %v", i, err)
			}
		}
		for i, stream := range streams {
			if _, err := finishWrite(stream, reqs[i][1:]); err != nil {
				t.Errorf("stream %d (%s): %v", i, []string{"compressed", "uncompressed"}[i], err)
			}
		}
		if got := c.readBlob(t, b.d); !bytes.Equal(got, b.data) {
			t.Errorf("Read after concurrent Writes: %d bytes, not the written ones", len(got))
		}
	})
	t.Run("CompressedAbsentNotFound", func(t *testing.T) {
		_, _, err := c.read(rpcContext(t), &bspb.ReadRequest{ResourceName: c.readName(absentDigest(t, 100), resource.Zstd)})
		wantCode(t, "compressed Read of an absent blob", err, codes.NotFound)
	})
}
