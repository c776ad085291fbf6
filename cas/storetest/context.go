package storetest

import (
	"context"
	"testing"
	"time"
)

// Timeout bounds each test that uses Context, and the stopping of a server
// StartServer started: generous on a loaded machine, short enough that a
// hang fails the test rather than the whole run.
const Timeout = 60 * time.Second

// Context returns a context that ends after Timeout or when the test ends.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	t.Cleanup(cancel)
	return ctx
}
