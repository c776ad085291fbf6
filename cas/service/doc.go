// Package service implements the REAPI storage services over gRPC:
// Capabilities, ContentAddressableStorage, ByteStream (with zstd
// compressed-blobs and resumable writes) and ActionCache.
//
// Each RPC validates its request (digests, resource names, instance names)
// and turns it into calls on the narrow cas interfaces; errors become gRPC
// statuses in one function, Status. Registration of all of mound's services
// on a grpc.Server happens in package server, not here.
package service
