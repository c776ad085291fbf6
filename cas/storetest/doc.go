// Package storetest is the conformance suite of the cas storage interfaces:
// every BlobStore and ActionCache implementation runs Run in its tests, so
// all of them keep the same contract.
//
// It also holds the fakes and fixtures that tests of code built on those
// interfaces share, so that each is written once: CountingStore, a
// decorator counting the calls that go through a store; Put and PutMessage,
// which store test blobs; Context, bounded by Timeout; StartServer and
// Serve, a mound server (package server) on an in-process bufconn listener
// or a given one, stopped when the test ends; ListTree and CompareTrees,
// which describe and compare directories after a round trip through a CAS.
// Packages that server imports cannot use this package in their own tests:
// that would be an import cycle.
package storetest
