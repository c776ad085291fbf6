// Package storetest is the conformance suite of the cas storage interfaces:
// every BlobStore and ActionCache implementation runs Run in its tests, so
// all of them keep the same contract.
package storetest
