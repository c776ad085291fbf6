package service

import (
	"context"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	semver "github.com/bazelbuild/remote-apis/build/bazel/semver"

	"github.com/mound-build/mound/cas/resource"
)

// Capabilities implements the REAPI Capabilities service.
type Capabilities struct {
	repb.UnimplementedCapabilitiesServer
	opts Options
}

// NewCapabilities returns the Capabilities service for a server built with
// opts.
func NewCapabilities(opts Options) *Capabilities {
	opts.setDefaults()
	return &Capabilities{opts: opts}
}

// GetCapabilities implements repb.CapabilitiesServer.
func (c *Capabilities) GetCapabilities(ctx context.Context, req *repb.GetCapabilitiesRequest) (*repb.ServerCapabilities, error) {
	if err := resource.ValidateInstance(req.GetInstanceName()); err != nil {
		return nil, Status(err)
	}
	caps := &repb.ServerCapabilities{
		CacheCapabilities: &repb.CacheCapabilities{
			DigestFunctions:                 []repb.DigestFunction_Value{repb.DigestFunction_SHA256},
			ActionCacheUpdateCapabilities:   &repb.ActionCacheUpdateCapabilities{UpdateEnabled: true},
			MaxBatchTotalSizeBytes:          c.opts.MaxBatchBytes,
			SymlinkAbsolutePathStrategy:     repb.SymlinkAbsolutePathStrategy_ALLOWED,
			SupportedCompressors:            []repb.Compressor_Value{repb.Compressor_ZSTD},
			SupportedBatchUpdateCompressors: []repb.Compressor_Value{repb.Compressor_ZSTD},
		},
		// Bazel 4 refuses a server whose range does not contain 2.0.
		LowApiVersion:  &semver.SemVer{Major: 2},
		HighApiVersion: &semver.SemVer{Major: 2, Minor: 3},
	}
	if c.opts.ExecutionEnabled {
		caps.ExecutionCapabilities = &repb.ExecutionCapabilities{
			// Bazel 4 reads only the deprecated single digest function.
			DigestFunction:  repb.DigestFunction_SHA256,
			DigestFunctions: []repb.DigestFunction_Value{repb.DigestFunction_SHA256},
			ExecEnabled:     true,
		}
	}
	return caps, nil
}
