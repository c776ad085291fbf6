// Package conformance is mound's REAPI conformance suite: black-box tests of
// the Remote Execution API v2 storage services (Capabilities,
// ContentAddressableStorage, ByteStream with zstd compressed-blobs, and
// ActionCache) that run against any REAPI endpoint over gRPC.
//
// The package holds only tests. Against a server that is already running:
//
//	go test ./conformance -args -target=127.0.0.1:8980 [-instance=NAME]
//
// Without -target, the first test builds ./cmd/mound of the module around
// the working directory into a temporary directory (or uses the binary given
// with -mound=PATH), starts it with --listen 127.0.0.1:0 --http 127.0.0.1:0
// --data <tmpdir>/data and reads its address from the "grpc://HOST:PORT"
// line it prints on stdout; TestMain stops it with SIGTERM when the tests are
// done. When a test fails, the server's output is printed after the test
// results. go test's result cache is invalidated by any change to the
// module's files (or to the -mound binary), so a cached pass is never stale.
//
// Other flags: -instance-a and -instance-b name the two instances the
// action-cache isolation test writes to and reads from ("conformance-a" and
// "conformance-b" by default).
//
// Every blob and action is made of fresh random bytes, so the suite also
// passes against a server holding data from earlier runs. Every RPC runs
// under its own timeout, so a server that hangs fails the test instead of
// stalling it. The assertions follow the comments in remote_execution.proto
// and google/bytestream/bytestream.proto; where those allow several
// behaviours the test accepts each of them and says so in a comment.
//
// Each service has its own file (capabilities_test.go, cas_test.go,
// gettree_test.go, bytestream_test.go, zstd_test.go, actioncache_test.go);
// emptyblob_test.go checks the always-present empty blob across all of
// them. client_test.go holds the client bound to the shared connection and
// the helpers that later suites (Execute, WaitExecution) build on;
// main_test.go starts and stops the server.
package conformance
