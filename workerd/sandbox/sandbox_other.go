//go:build !linux

package sandbox

import (
	"context"
	"errors"
)

// errUnsupported is what Run and Available report off Linux: the sandbox is
// made of Linux namespaces.
var errUnsupported = errors.New("sandbox: only supported on Linux")

func run(context.Context, *Spec, initConfig) (Result, error) { return Result{}, errUnsupported }

func available() error { return errUnsupported }

func availableFUSE() error { return errUnsupported }

func runInitIfRequested() {}
