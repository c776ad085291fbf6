// Package conformance is mound's REAPI conformance suite: black-box tests of
// the Remote Execution API v2 storage services (Capabilities,
// ContentAddressableStorage, ByteStream with zstd compressed-blobs, and
// ActionCache) and of the Execution service (Execute, WaitExecution) that
// run against any REAPI endpoint over gRPC.
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
// done. The first execution case also builds ./cmd/workerd (or uses
// -workerd=PATH), starts one worker (--jobs 2 --name conformance-worker)
// connected to that mound, and waits until the server's Admin ListWorkers
// lists it; TestMain stops it before the server. Against a -target, the
// execution cases run when its Capabilities advertise exec_enabled, and
// otherwise log that the target is a cache only. When a test fails, the
// output of the server and the worker is printed after the test results.
// go test's result cache is invalidated by any change to the module's files
// (or to the -mound and -workerd binaries), so a cached pass is never stale.
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
// gettree_test.go, bytestream_test.go, zstd_test.go, actioncache_test.go,
// execute_test.go); emptyblob_test.go checks the always-present empty blob
// across all of them. client_test.go holds the client bound to the shared
// connection and its helpers, execclient_test.go the helpers that build
// actions, follow operations and check results; main_test.go starts and
// stops the server, workerd_test.go the worker.
package conformance
