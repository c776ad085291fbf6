package storetest

import (
	"context"
	"log/slog"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/mound-build/mound/server"
)

// bufconnBytes is the in-memory buffer of each connection to a bufconn
// listener, as the tests had it: a large message takes several writes.
const bufconnBytes = 1 << 20

// StartServer runs a mound server with opts on an in-process bufconn
// listener (see Serve) and returns a connection to it, closed when the test
// ends. dial adds dial options, such as interceptors.
func StartServer(t testing.TB, opts server.Options, dial ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	lis := bufconn.Listen(bufconnBytes)
	Serve(t, opts, lis)
	return DialBufconn(t, lis, dial...)
}

// Serve runs a mound server with opts (a nil Logger discards its messages)
// on lis until the test ends, then stops it, within Timeout, and waits for
// it to return.
func Serve(t testing.TB, opts server.Options, lis net.Listener) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	srv, err := server.New(opts)
	if err != nil {
		lis.Close()
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServeGRPC(lis) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), Timeout)
		defer cancel()
		srv.Stop(ctx)
		<-served
	})
}

// DialBufconn returns a connection to lis, with dial options added to the
// insecure credentials it needs; its target is "passthrough:///bufconn".
// The connection closes when the test ends.
func DialBufconn(t testing.TB, lis *bufconn.Listener, dial ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	opts := append([]grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	}, dial...)
	conn, err := grpc.NewClient("passthrough:///bufconn", opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}
