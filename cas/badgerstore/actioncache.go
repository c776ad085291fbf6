package badgerstore

import (
	"context"
	"errors"
	"fmt"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/dgraph-io/badger/v4"
	"google.golang.org/protobuf/proto"

	"github.com/mound-build/mound/cas"
)

// GetActionResult implements cas.ActionCache.
func (s *Store) GetActionResult(ctx context.Context, key cas.ActionKey) (*repb.ActionResult, error) {
	r := &repb.ActionResult{}
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(actionKey(key))
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error { return proto.Unmarshal(v, r) })
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("action %v in instance %q: %w", key.Action, key.Instance, cas.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("action %v: %w", key.Action, err)
	}
	return r, nil
}

// UpdateActionResult implements cas.ActionCache. The write is durable when
// it returns.
func (s *Store) UpdateActionResult(ctx context.Context, key cas.ActionKey, r *repb.ActionResult) error {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	if err != nil {
		return fmt.Errorf("action %v: %w", key.Action, err)
	}
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(actionKey(key), b) }); err != nil {
		return fmt.Errorf("action %v: %w", key.Action, err)
	}
	return nil
}
