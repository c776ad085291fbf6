// Package memstore is an in-memory cas.BlobStore and cas.ActionCache, for
// tests and for components (like the benchmark's floor) that need a real,
// trivial store. Nothing survives the process.
package memstore
