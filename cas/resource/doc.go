// Package resource parses and builds the ByteStream resource names of REAPI
// blobs:
//
//	{instance}/blobs/{hash}/{size}
//	{instance}/compressed-blobs/{compressor}/{hash}/{size}
//	{instance}/uploads/{uuid}/blobs/{hash}/{size}{/metadata}
//	{instance}/uploads/{uuid}/compressed-blobs/{compressor}/{hash}/{size}{/metadata}
//
// An optional "sha256/" digest-function segment may precede the hash.
package resource
