package service

import (
	"bytes"
	"testing"

	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// split cuts b into buffers of the sizes sizes gives in turn (at least
// one byte each), as gRPC hands a message over in frames.
func split(b []byte, sizes []byte) mem.BufferSlice {
	var out mem.BufferSlice
	for i := 0; len(b) > 0; i++ {
		n := 1
		if len(sizes) > 0 {
			n = int(sizes[i%len(sizes)])%64 + 1
		}
		n = min(n, len(b))
		out = append(out, mem.SliceBuffer(b[:n]))
		b = b[n:]
	}
	return out
}

// FuzzChunkCodec checks that ChunkCodec decodes any bytes, in any framing,
// as proto.Unmarshal does.
func FuzzChunkCodec(f *testing.F) {
	for _, req := range []*bspb.WriteRequest{
		{},
		{ResourceName: "uploads/u/blobs/abc/3", WriteOffset: 7, FinishWrite: true, Data: []byte("abc")},
		{WriteOffset: 1 << 40, Data: bytes.Repeat([]byte{1}, 300)},
		{ResourceName: "x", Data: []byte{}},
	} {
		b, err := proto.Marshal(req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, []byte{16, 1, 63})
	}
	// Unusual encodings: a repeated field, an unknown field, a field of
	// the wrong type, invalid UTF-8, a truncated length.
	f.Add([]byte{0x10, 0x01, 0x10, 0x02}, []byte{1})
	f.Add([]byte{0x20, 0x01}, []byte{1})
	f.Add([]byte{0x12, 0x01, 0x00}, []byte{1})
	f.Add([]byte{0x0a, 0x01, 0xff}, []byte{1})
	f.Add([]byte{0x52, 0x05, 0x00}, []byte{1})
	c := NewChunkCodec()
	f.Fuzz(func(t *testing.T, b, sizes []byte) {
		want := &bspb.WriteRequest{}
		wantErr := proto.Unmarshal(b, want)
		got := &bspb.WriteRequest{ResourceName: "left over"}
		err := c.Unmarshal(split(b, sizes), got)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("Unmarshal: error %v, proto.Unmarshal: error %v", err, wantErr)
		}
		if err != nil {
			return
		}
		if !proto.Equal(want, got) {
			t.Fatalf("Unmarshal gives %v, proto.Unmarshal %v", got, want)
		}
		c.release(got.Data)
	})
}

// TestChunkCodecPooledData decodes data large enough for a pooled buffer,
// in small frames and in one.
func TestChunkCodecPooledData(t *testing.T) {
	c := NewChunkCodec()
	data := make([]byte, 1<<20+3)
	for i := range data {
		data[i] = byte(i * 7)
	}
	b, err := proto.Marshal(&bspb.WriteRequest{ResourceName: "uploads/u/blobs/abc/3", WriteOffset: 9, Data: data})
	if err != nil {
		t.Fatal(err)
	}
	for _, framing := range []mem.BufferSlice{split(b, []byte{200, 13}), {mem.SliceBuffer(b)}} {
		for range 3 { // the second and third reuse released buffers
			got := &bspb.WriteRequest{}
			if err := c.Unmarshal(framing, got); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Data, data) || got.WriteOffset != 9 || got.ResourceName != "uploads/u/blobs/abc/3" {
				t.Fatalf("decoded offset %d, name %q, %d bytes of data (equal: %v)", got.WriteOffset, got.ResourceName, len(got.Data), bytes.Equal(got.Data, data))
			}
			c.release(got.Data)
		}
	}
}

func TestChunkClass(t *testing.T) {
	for _, tc := range []struct{ n, class int }{
		{0, -1},
		{minPooledChunk - 1, -1},
		{minPooledChunk, 0},
		{minPooledChunk + 1, 1},
		{1 << 20, 4},
		{1<<20 + 1, 5},
		{minPooledChunk << (chunkClasses - 1), chunkClasses - 1},
		{minPooledChunk<<(chunkClasses-1) + 1, -1},
	} {
		if got := chunkClass(tc.n); got != tc.class {
			t.Errorf("chunkClass(%d) = %d, want %d", tc.n, got, tc.class)
		}
	}
	if minPooledChunk<<(chunkClasses-1) < MaxRecvMsgBytes {
		t.Errorf("the largest chunk class (%d bytes) is smaller than a message (%d)", minPooledChunk<<(chunkClasses-1), MaxRecvMsgBytes)
	}
}

// TestChunkCodecBuffers checks the sizes of the buffers get returns and
// that release takes any buffer, keeping only those of its classes.
func TestChunkCodecBuffers(t *testing.T) {
	c := NewChunkCodec()
	for _, n := range []int{0, 100, minPooledChunk, 1<<20 - 5, 1 << 20, MaxRecvMsgBytes + 1} {
		b := c.get(n)
		if len(b) != n {
			t.Errorf("get(%d) has len %d", n, len(b))
		}
		if class := chunkClass(n); class >= 0 && cap(b) != minPooledChunk<<class {
			t.Errorf("get(%d) has cap %d, want %d", n, cap(b), minPooledChunk<<class)
		}
		c.release(b)
		c.release(b[:n/2]) // a prefix of a pooled buffer
	}
	c.release(nil)
	c.release(make([]byte, 100<<10)) // not a class's size: left to the GC
	var none *ChunkCodec
	none.release(make([]byte, 1<<20)) // a nil codec keeps nothing
}
