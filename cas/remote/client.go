package remote

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/cas/resource"
)

// Limits of the client. Each bounds a fan-out or a message; the comments say
// why the size.
const (
	// maxMessageBytes is what one request or response may hold: gRPC's
	// default 4 MiB receive limit, which the server or this client's own
	// connection may use, less room for headers and framing.
	maxMessageBytes = 4<<20 - 64<<10

	// blobOverheadBytes is what one blob adds to a batch message besides
	// its content: its digest (64 hex digits and a size), field tags and
	// lengths, and in responses a status whose message may name the blob.
	blobOverheadBytes = 256

	// maxFindMissingDigests is the most digests per FindMissingBlobs
	// request: about 750 KiB of digests, well inside maxMessageBytes, and
	// few enough that one request never keeps a server busy for long.
	maxFindMissingDigests = 10000

	// findMissingParallelism is how many FindMissingBlobs requests of one
	// call are in flight together: enough to hide a round trip behind
	// another, few enough not to monopolize the server for one tree.
	findMissingParallelism = 4

	// batchParallelism is how many BatchUpdateBlobs or BatchReadBlobs
	// requests of one call are in flight together. Each holds up to
	// maxMessageBytes, so this also bounds the memory of a call.
	batchParallelism = 4

	// streamParallelism is how many ByteStream transfers of one PutBatch or
	// GetBatch call run together; each holds a 1 MiB chunk at a time.
	streamParallelism = 4

	// chunkBytes is the size of ByteStream write chunks: large enough that
	// per-message costs vanish, well under every receive limit.
	chunkBytes = 1 << 20
)

// Options configure a Client. The zero value talks to the default instance
// and uses the batch limit the server announces.
type Options struct {
	// Instance is the REAPI instance name of the CAS requests. Action cache
	// requests use the instance of their cas.ActionKey instead.
	Instance string
	// MaxBatchBytes, when positive, lowers the server's
	// max_batch_total_size_bytes: blobs larger than this go through
	// ByteStream. 0 uses what the server announces.
	MaxBatchBytes int64
}

// Validate reports whether o is usable.
func (o Options) Validate() error {
	if err := resource.ValidateInstance(o.Instance); err != nil {
		return err
	}
	if o.MaxBatchBytes < 0 {
		return fmt.Errorf("remote: MaxBatchBytes %d is negative", o.MaxBatchBytes)
	}
	return nil
}

// Client is a remote CAS and action cache. Create it with New. It is safe for
// concurrent use; it does not own the connection, which the caller closes
// after the last call returned.
type Client struct {
	opts   Options
	target string
	caps   repb.CapabilitiesClient
	cas    repb.ContentAddressableStorageClient
	ac     repb.ActionCacheClient
	bs     bspb.ByteStreamClient

	mu         sync.Mutex
	batchLimit int64 // largest blob sent or read in batches; 0 until known; guarded by mu
}

// Interfaces the client implements.
var (
	_ cas.BlobStore   = (*Client)(nil)
	_ cas.BatchPutter = (*Client)(nil)
	_ cas.ActionCache = (*Client)(nil)
)

// New returns a client of the server at the other end of conn.
func New(conn *grpc.ClientConn, opts Options) (*Client, error) {
	if conn == nil {
		return nil, errors.New("remote: no connection")
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	return &Client{
		opts:   opts,
		target: conn.Target(),
		caps:   repb.NewCapabilitiesClient(conn),
		cas:    repb.NewContentAddressableStorageClient(conn),
		ac:     repb.NewActionCacheClient(conn),
		bs:     bspb.NewByteStreamClient(conn),
	}, nil
}

// Target is the server's address, as the connection was made to it.
func (c *Client) Target() string { return c.target }

// maxBatchBlob returns the size of the largest blob that goes in batch
// requests. The server's capabilities are fetched on first use; a failure
// is returned and asked again next time, a success is kept.
func (c *Client) maxBatchBlob(ctx context.Context) (int64, error) {
	c.mu.Lock()
	limit := c.batchLimit
	c.mu.Unlock()
	if limit > 0 {
		return limit, nil
	}
	caps, err := c.caps.GetCapabilities(ctx, &repb.GetCapabilitiesRequest{InstanceName: c.opts.Instance})
	if err != nil {
		return 0, c.rpcError(ctx, "capabilities", err)
	}
	cc := caps.GetCacheCapabilities()
	if fs := cc.GetDigestFunctions(); len(fs) > 0 && !slices.Contains(fs, repb.DigestFunction_SHA256) {
		return 0, fmt.Errorf("server %s does not support SHA-256 digests (it offers %v)", c.target, fs)
	}
	// REAPI: 0 means the server sets no limit; the message limit still does.
	limit = maxMessageBytes - blobOverheadBytes
	if n := cc.GetMaxBatchTotalSizeBytes(); n > 0 {
		limit = min(limit, n)
	}
	if c.opts.MaxBatchBytes > 0 {
		limit = min(limit, c.opts.MaxBatchBytes)
	}
	c.mu.Lock()
	c.batchLimit = limit
	c.mu.Unlock()
	return limit, nil
}

// rpcError converts a failed RPC about what into the error the cas
// interfaces promise. It is the one place where gRPC codes become cas
// errors.
func (c *Client) rpcError(ctx context.Context, what string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("%s on %s: %w", what, c.target, ctxErr)
	}
	switch status.Code(err) {
	case codes.NotFound:
		return fmt.Errorf("%s: %w on %s", what, cas.ErrNotFound, c.target)
	case codes.ResourceExhausted:
		return fmt.Errorf("%s on %s: %w: %w", what, c.target, cas.ErrFull, err)
	case codes.Unavailable:
		return fmt.Errorf("%s: server %s is unavailable: %w", what, c.target, err)
	}
	return fmt.Errorf("%s on %s: %w", what, c.target, err)
}

// readError converts a failed read of the blob d: a missing blob is a
// *cas.MissingError naming it, so that callers can report which blob is
// gone.
func (c *Client) readError(ctx context.Context, d digest.Digest, err error) error {
	if status.Code(err) == codes.NotFound && ctx.Err() == nil {
		return fmt.Errorf("%w on %s", &cas.MissingError{Digest: d}, c.target)
	}
	return c.rpcError(ctx, fmt.Sprintf("blob %v", d), err)
}

// statusError returns the error of one blob's status in a batch response,
// nil for OK.
func statusError(st *rpcstatus.Status) error {
	if codes.Code(st.GetCode()) == codes.OK {
		return nil
	}
	return status.ErrorProto(st)
}
