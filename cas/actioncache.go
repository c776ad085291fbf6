package cas

import (
	"context"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/mound-build/mound/cas/digest"
)

// ActionKey names an action cache entry: the action's digest within an
// instance. Instance names keep action caches apart; the CAS is shared by all
// instances, since content is its own name.
type ActionKey struct {
	Instance string
	Action   digest.Digest
}

// ActionCache maps actions to their results.
type ActionCache interface {
	// GetActionResult returns the stored result for key, or ErrNotFound.
	GetActionResult(ctx context.Context, key ActionKey) (*repb.ActionResult, error)
	// UpdateActionResult stores r for key, replacing any earlier result.
	// The store keeps r's fields as given; it does not check the blobs r
	// references (CompleteActionCache does that on reads).
	UpdateActionResult(ctx context.Context, key ActionKey, r *repb.ActionResult) error
}
