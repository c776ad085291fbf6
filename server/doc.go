// Package server assembles mound's gRPC and HTTP servers. It is the one place
// where RPC services are registered and where every RPC passes the same
// interceptors (metrics now; the authorizer of caller roles later), so no
// service can be reached around them.
//
// A request arrives at the grpc.Server built by New, passes the
// interceptors, and reaches a service from cas/service (and, with remote
// execution, execution/), which calls the storage interfaces of package cas.
// The HTTP server serves Prometheus metrics at /metrics.
package server
