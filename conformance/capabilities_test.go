package conformance

import (
	"fmt"
	"slices"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	semver "github.com/bazelbuild/remote-apis/build/bazel/semver"
)

func TestCapabilities(t *testing.T) {
	t.Parallel()
	c := defaultClient(t)
	caps, err := c.caps.GetCapabilities(rpcContext(t), &repb.GetCapabilitiesRequest{InstanceName: c.instance})
	if err != nil {
		t.Fatalf("GetCapabilities: %v", err)
	}
	cache := caps.GetCacheCapabilities()

	t.Run("APIVersionRangeContains2.0", func(t *testing.T) {
		// Bazel refuses a server whose range does not contain 2.0, and
		// one that sets neither end.
		low, high := caps.GetLowApiVersion(), caps.GetHighApiVersion()
		v2 := &semver.SemVer{Major: 2}
		if low == nil || high == nil {
			t.Fatalf("low_api_version %v, high_api_version %v: both must be set", low, high)
		}
		if compareSemVer(low, v2) > 0 || compareSemVer(v2, high) > 0 {
			t.Errorf("API versions %s..%s do not contain 2.0", semVerString(low), semVerString(high))
		}
	})
	t.Run("DigestFunctionSHA256", func(t *testing.T) {
		if !slices.Contains(cache.GetDigestFunctions(), repb.DigestFunction_SHA256) {
			t.Errorf("cache_capabilities.digest_functions = %v, want SHA256 among them", cache.GetDigestFunctions())
		}
	})
	t.Run("ActionCacheUpdateEnabled", func(t *testing.T) {
		if !cache.GetActionCacheUpdateCapabilities().GetUpdateEnabled() {
			t.Errorf("cache_capabilities.action_cache_update_capabilities.update_enabled is false")
		}
	})
	t.Run("CompressorZSTD", func(t *testing.T) {
		if !slices.Contains(cache.GetSupportedCompressors(), repb.Compressor_ZSTD) {
			t.Errorf("cache_capabilities.supported_compressors = %v, want ZSTD among them", cache.GetSupportedCompressors())
		}
	})
	t.Run("MaxBatchTotalSizePositive", func(t *testing.T) {
		// Zero means "no limit" in the proto, but a server always has
		// one: at least gRPC's message size.
		if n := cache.GetMaxBatchTotalSizeBytes(); n <= 0 {
			t.Errorf("cache_capabilities.max_batch_total_size_bytes = %d, want > 0", n)
		}
	})
}

// compareSemVer orders API versions by major, minor and patch; prerelease
// labels are not used by REAPI versions.
func compareSemVer(a, b *semver.SemVer) int {
	for _, d := range []int32{a.GetMajor() - b.GetMajor(), a.GetMinor() - b.GetMinor(), a.GetPatch() - b.GetPatch()} {
		if d != 0 {
			return int(d)
		}
	}
	return 0
}

func semVerString(v *semver.SemVer) string {
	return fmt.Sprintf("%d.%d.%d", v.GetMajor(), v.GetMinor(), v.GetPatch())
}
