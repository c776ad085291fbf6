package service

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/cas/resource"
)

// Status converts an error from the cas layer to a gRPC status error. It is
// the one place where storage errors meet gRPC codes; errors that already
// carry a status pass through.
func Status(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(Code(err), err.Error())
}

// Code is the gRPC code for err (see Status).
func Code(err error) codes.Code {
	if s, ok := status.FromError(err); ok {
		return s.Code()
	}
	switch {
	case errors.Is(err, digest.ErrInvalid), errors.Is(err, digest.ErrMismatch),
		errors.Is(err, resource.ErrInvalid), errors.Is(err, cas.ErrCorrupt):
		return codes.InvalidArgument
	case errors.Is(err, cas.ErrNotFound):
		return codes.NotFound
	case errors.Is(err, cas.ErrFull):
		return codes.ResourceExhausted
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	}
	return codes.Internal
}

func invalid(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}
