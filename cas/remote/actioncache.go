package remote

import (
	"context"
	"fmt"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/mound-build/mound/cas"
)

// GetActionResult implements cas.ActionCache with the ActionCache service,
// in key.Instance. A miss is an error wrapping cas.ErrNotFound; a mound
// server also answers a miss when blobs the result references are gone.
func (c *Client) GetActionResult(ctx context.Context, key cas.ActionKey) (*repb.ActionResult, error) {
	r, err := c.ac.GetActionResult(ctx, &repb.GetActionResultRequest{
		InstanceName: key.Instance,
		ActionDigest: key.Action.Proto(),
	})
	if err != nil {
		return nil, c.rpcError(ctx, fmt.Sprintf("action %v in %q", key.Action, key.Instance), err)
	}
	return r, nil
}

// UpdateActionResult implements cas.ActionCache with the ActionCache
// service, in key.Instance. The blobs r references should be uploaded first:
// a server may refuse, or later report as a miss, a result whose outputs it
// does not hold.
func (c *Client) UpdateActionResult(ctx context.Context, key cas.ActionKey, r *repb.ActionResult) error {
	_, err := c.ac.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{
		InstanceName: key.Instance,
		ActionDigest: key.Action.Proto(),
		ActionResult: r,
	})
	if err != nil {
		return c.rpcError(ctx, fmt.Sprintf("update action %v in %q", key.Action, key.Instance), err)
	}
	return nil
}
