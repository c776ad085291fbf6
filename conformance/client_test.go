package conformance

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/google/uuid"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/cas/resource"
)

// rpcTimeout bounds every RPC of the suite, streams included: generous for
// a loaded machine, short enough that a hanging server fails the suite in
// well under a minute.
const rpcTimeout = 15 * time.Second

// rpcContext returns a context that expires after rpcTimeout and is
// cancelled when t ends. Call it once per RPC.
func rpcContext(t testing.TB) context.Context {
	return timeoutContext(t, rpcTimeout)
}

func timeoutContext(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// client talks to the server under test on the suite's connection, within
// one instance name. Its helpers fail the test on any unexpected error;
// the raw stubs are there for the cases that expect errors.
type client struct {
	instance string
	conn     *grpc.ClientConn
	caps     repb.CapabilitiesClient
	cas      repb.ContentAddressableStorageClient
	ac       repb.ActionCacheClient
	bs       bspb.ByteStreamClient
	exec     repb.ExecutionClient
}

// newClient returns a client for instance on the suite's connection.
func newClient(t testing.TB, instance string) *client {
	t.Helper()
	conn := connect(t)
	return &client{
		instance: instance,
		conn:     conn,
		caps:     repb.NewCapabilitiesClient(conn),
		cas:      repb.NewContentAddressableStorageClient(conn),
		ac:       repb.NewActionCacheClient(conn),
		bs:       bspb.NewByteStreamClient(conn),
		exec:     repb.NewExecutionClient(conn),
	}
}

// defaultClient returns a client for the -instance flag's instance.
func defaultClient(t testing.TB) *client {
	t.Helper()
	return newClient(t, *instanceFlag)
}

// blob is test content with its digest.
type blob struct {
	data []byte
	d    digest.Digest
}

func newBlobOf(data []byte) blob { return blob{data: data, d: digest.OfBytes(data)} }

// randomBlob returns size random bytes: unique to this run, so a server
// holding data of earlier runs does not already have it (for sizes of 16
// bytes and more; smaller blobs may repeat).
func randomBlob(t testing.TB, size int) blob {
	t.Helper()
	b := make([]byte, size)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return newBlobOf(b)
}

// compressibleBlob returns size unique bytes drawn from 16 letters, which
// zstd shrinks to about half.
func compressibleBlob(t testing.TB, size int) blob {
	t.Helper()
	b := randomBlob(t, size).data
	for i := range b {
		b[i] = 'a' + b[i]%16
	}
	return newBlobOf(b)
}

// absentDigest returns a digest of size bytes that no server holds: its
// hash is random, so unlike a tiny random blob it cannot collide with
// content uploaded before.
func absentDigest(t testing.TB, size int) digest.Digest {
	t.Helper()
	d := digest.Digest{Size: int64(size)}
	if _, err := rand.Read(d.Hash[:]); err != nil {
		t.Fatal(err)
	}
	return d
}

func (b blob) pb() *repb.Digest { return b.d.Proto() }

// readName and writeName build ByteStream resource names in c's instance;
// every write name has a new upload uuid.
func (c *client) readName(d digest.Digest, comp resource.Compressor) string {
	return resource.ReadName(c.instance, d, comp)
}

func (c *client) writeName(d digest.Digest, comp resource.Compressor) string {
	return resource.WriteName(c.instance, uuid.NewString(), d, comp)
}

// prefixed puts c's instance in front of a hand-made resource name.
func (c *client) prefixed(name string) string {
	if c.instance == "" {
		return name
	}
	return c.instance + "/" + name
}

// upload stores blobs with BatchUpdateBlobs and fails unless each is stored.
func (c *client) upload(t testing.TB, blobs ...blob) {
	t.Helper()
	req := &repb.BatchUpdateBlobsRequest{InstanceName: c.instance}
	for _, b := range blobs {
		req.Requests = append(req.Requests, &repb.BatchUpdateBlobsRequest_Request{Digest: b.pb(), Data: b.data})
	}
	resp, err := c.cas.BatchUpdateBlobs(rpcContext(t), req)
	if err != nil {
		t.Fatalf("BatchUpdateBlobs of %d blobs: %v", len(blobs), err)
	}
	if len(resp.GetResponses()) != len(blobs) {
		t.Fatalf("BatchUpdateBlobs of %d blobs: %d responses", len(blobs), len(resp.GetResponses()))
	}
	for _, r := range resp.GetResponses() {
		if err := status.ErrorProto(r.GetStatus()); err != nil {
			t.Fatalf("BatchUpdateBlobs: blob %v: %v", digestString(r.GetDigest()), err)
		}
	}
}

// missing calls FindMissingBlobs and returns the set it reports, failing if
// the server reports a digest that was not asked for.
func (c *client) missing(t testing.TB, ds ...digest.Digest) map[digest.Digest]bool {
	t.Helper()
	req := &repb.FindMissingBlobsRequest{InstanceName: c.instance}
	asked := map[digest.Digest]bool{}
	for _, d := range ds {
		req.BlobDigests = append(req.BlobDigests, d.Proto())
		asked[d] = true
	}
	resp, err := c.cas.FindMissingBlobs(rpcContext(t), req)
	if err != nil {
		t.Fatalf("FindMissingBlobs: %v", err)
	}
	got := map[digest.Digest]bool{}
	for _, p := range resp.GetMissingBlobDigests() {
		d, err := digest.FromProto(p)
		if err != nil || !asked[d] {
			t.Fatalf("FindMissingBlobs reported %v, which was not asked for", digestString(p))
		}
		got[d] = true
	}
	return got
}

// wantPresent fails unless FindMissingBlobs reports none of ds missing.
func (c *client) wantPresent(t testing.TB, ds ...digest.Digest) {
	t.Helper()
	for d := range c.missing(t, ds...) {
		t.Errorf("FindMissingBlobs: %v is missing, want present", d)
	}
}

// wantMissing fails unless FindMissingBlobs reports every one of ds missing.
func (c *client) wantMissing(t testing.TB, ds ...digest.Digest) {
	t.Helper()
	got := c.missing(t, ds...)
	for _, d := range ds {
		if !got[d] {
			t.Errorf("FindMissingBlobs: %v is present, want missing", d)
		}
	}
}

// writeRequests splits data into a Write stream's requests of at most chunk
// bytes, starting at offset. Only the first request carries name, as Bazel
// sends it. write_offset counts the bytes of data sent before, which for a
// compressed upload is what the REAPI asks for: the first offset plus the
// compressed bytes sent so far.
func writeRequests(name string, data []byte, offset int64, chunk int, finish bool) []*bspb.WriteRequest {
	var reqs []*bspb.WriteRequest
	for first := true; first || len(data) > 0; first = false {
		n := min(chunk, len(data))
		r := &bspb.WriteRequest{WriteOffset: offset, Data: data[:n]}
		if first {
			r.ResourceName = name
		}
		reqs = append(reqs, r)
		data = data[n:]
		offset += int64(n)
	}
	reqs[len(reqs)-1].FinishWrite = finish
	return reqs
}

// write sends reqs on one Write stream, then half-closes it and returns the
// server's answer. When the server ends the stream early, the remaining
// requests are not sent.
func (c *client) write(ctx context.Context, reqs []*bspb.WriteRequest) (*bspb.WriteResponse, error) {
	stream, err := c.bs.Write(ctx)
	if err != nil {
		return nil, err
	}
	return finishWrite(stream, reqs)
}

// finishWrite sends reqs on an open Write stream, then half-closes it and
// returns the server's answer.
func finishWrite(stream bspb.ByteStream_WriteClient, reqs []*bspb.WriteRequest) (*bspb.WriteResponse, error) {
	for _, r := range reqs {
		if err := stream.Send(r); err != nil {
			if errors.Is(err, io.EOF) {
				break // the server ended the stream; CloseAndRecv says how
			}
			return nil, err
		}
	}
	return stream.CloseAndRecv()
}

// writeBlob uploads b with ByteStream Write in chunks of chunk bytes and
// fails unless the server commits all of it.
func (c *client) writeBlob(t testing.TB, b blob, chunk int) {
	t.Helper()
	name := c.writeName(b.d, resource.Identity)
	resp, err := c.write(rpcContext(t), writeRequests(name, b.data, 0, chunk, true))
	if err != nil {
		t.Fatalf("Write %s: %v", name, err)
	}
	if resp.GetCommittedSize() != b.d.Size {
		t.Fatalf("Write %s: committed_size %d, want %d", name, resp.GetCommittedSize(), b.d.Size)
	}
}

// read runs one ByteStream Read and returns the bytes received, the size of
// each response, and the stream's error.
func (c *client) read(ctx context.Context, req *bspb.ReadRequest) ([]byte, []int, error) {
	stream, err := c.bs.Read(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	var data []byte
	var sizes []int
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return data, sizes, nil
		}
		if err != nil {
			return data, sizes, err
		}
		data = append(data, resp.GetData()...)
		sizes = append(sizes, len(resp.GetData()))
	}
}

// readBlob reads d whole with ByteStream Read.
func (c *client) readBlob(t testing.TB, d digest.Digest) []byte {
	t.Helper()
	name := c.readName(d, resource.Identity)
	data, _, err := c.read(rpcContext(t), &bspb.ReadRequest{ResourceName: name})
	if err != nil {
		t.Fatalf("Read %s: %v", name, err)
	}
	return data
}

// wantCode fails unless err has code. An INVALID_ARGUMENT must explain
// itself: its message must not be empty and, when mentions are given, must
// contain one of them (ignoring case), so that a user can tell which part
// of the request was wrong.
func wantCode(t testing.TB, what string, err error, code codes.Code, mentions ...string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code {
		t.Errorf("%s: got %v, want code %v", what, err, code)
		return
	}
	if code == codes.InvalidArgument && st.Message() == "" {
		t.Errorf("%s: INVALID_ARGUMENT with an empty message", what)
		return
	}
	if len(mentions) == 0 {
		return
	}
	msg := strings.ToLower(st.Message())
	for _, m := range mentions {
		if strings.Contains(msg, strings.ToLower(m)) {
			return
		}
	}
	t.Errorf("%s: message %q names none of %q", what, st.Message(), mentions)
}

// wantStatus is wantCode for a google.rpc.Status inside a response.
func wantStatus(t testing.TB, what string, st *rpcstatus.Status, code codes.Code, mentions ...string) {
	t.Helper()
	wantCode(t, what, status.ErrorProto(st), code, mentions...)
}

// digestString prints a digest message that may be invalid.
func digestString(p *repb.Digest) string {
	if d, err := digest.FromProto(p); err == nil {
		return d.String()
	}
	return p.String()
}

// badDigests are malformed digests every RPC taking a digest must refuse
// with INVALID_ARGUMENT, each with the words its error message must
// contain one of.
func badDigests() []struct {
	name     string
	d        *repb.Digest
	mentions []string
} {
	good := digest.Empty.Hash.String()
	return []struct {
		name     string
		d        *repb.Digest
		mentions []string
	}{
		{"non-hex hash", &repb.Digest{Hash: strings.Repeat("xy", 32), SizeBytes: 3}, []string{strings.Repeat("xy", 32)}},
		{"short hash", &repb.Digest{Hash: good[:40], SizeBytes: 3}, []string{good[:40]}},
		{"long hash", &repb.Digest{Hash: good + "00", SizeBytes: 3}, []string{good + "00"}},
		{"negative size", &repb.Digest{Hash: good[:63] + "1", SizeBytes: -5}, []string{"size", "-5"}},
	}
}
