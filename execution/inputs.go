package execution

import (
	"context"
	"errors"
	"fmt"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
)

// loaded is an action read from the CAS with everything it needs present.
type loaded struct {
	action       *repb.Action
	command      *repb.Command
	actionBytes  []byte
	commandBytes []byte
	inputFiles   int
	inputDirs    int
}

// missingBlobs collects the blobs an action needs that the CAS lacks.
type missingBlobs []digest.Digest

// err is FAILED_PRECONDITION with one MISSING violation per blob: the form
// Bazel needs to upload them and retry.
func (m missingBlobs) err() error {
	pf := &errdetails.PreconditionFailure{}
	for _, d := range m {
		pf.Violations = append(pf.Violations, &errdetails.PreconditionFailure_Violation{
			Type: "MISSING", Subject: "blobs/" + d.String(), Description: "not in the CAS",
		})
	}
	st := status.Newf(codes.FailedPrecondition, "%d blobs the action needs are missing from the CAS (first: %v)", len(m), m[0])
	if withDetails, err := st.WithDetails(pf); err == nil {
		st = withDetails
	}
	return st.Err()
}

// load reads the action, its command and its input tree, and checks that
// every blob they reference is stored. Missing blobs become a
// FAILED_PRECONDITION status error; malformed messages INVALID_ARGUMENT.
func load(ctx context.Context, blobs blobReader, d digest.Digest) (*loaded, error) {
	l := &loaded{}
	var missing missingBlobs
	var err error
	l.actionBytes, err = cas.ReadAll(ctx, blobs, d)
	if errors.Is(err, cas.ErrNotFound) {
		return nil, missingBlobs{d}.err()
	}
	if err != nil {
		return nil, err
	}
	l.action = &repb.Action{}
	if err := proto.Unmarshal(l.actionBytes, l.action); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "action %v is not an Action message: %v", d, err)
	}
	cmdDigest, err := digest.FromProto(l.action.GetCommandDigest())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "action %v: command_digest: %v", d, err)
	}
	rootDigest, err := digest.FromProto(l.action.GetInputRootDigest())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "action %v: input_root_digest: %v", d, err)
	}
	l.commandBytes, err = cas.ReadAll(ctx, blobs, cmdDigest)
	switch {
	case errors.Is(err, cas.ErrNotFound):
		missing = append(missing, cmdDigest)
	case err != nil:
		return nil, err
	default:
		l.command = &repb.Command{}
		if err := proto.Unmarshal(l.commandBytes, l.command); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "command %v is not a Command message: %v", cmdDigest, err)
		}
		if len(l.command.GetArguments()) == 0 {
			return nil, status.Errorf(codes.InvalidArgument, "command %v has no arguments", cmdDigest)
		}
	}
	treeMissing, err := l.checkTree(ctx, blobs, rootDigest)
	if err != nil {
		return nil, err
	}
	missing = append(missing, treeMissing...)
	if len(missing) > 0 {
		return nil, missing.err()
	}
	return l, nil
}

// checkTree walks the input tree breadth-first and returns the missing
// directories and files. Each distinct directory is read once.
func (l *loaded) checkTree(ctx context.Context, blobs blobReader, root digest.Digest) (missingBlobs, error) {
	var missing missingBlobs
	seen := map[digest.Digest]bool{root: true}
	files := map[digest.Digest]bool{}
	queue := []digest.Digest{root}
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		b, err := cas.ReadAll(ctx, blobs, d)
		if errors.Is(err, cas.ErrNotFound) {
			missing = append(missing, d)
			continue
		}
		if err != nil {
			return nil, err
		}
		dir := &repb.Directory{}
		if err := proto.Unmarshal(b, dir); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "input directory %v is not a Directory message: %v", d, err)
		}
		l.inputDirs++
		for _, f := range dir.GetFiles() {
			fd, err := digest.FromProto(f.GetDigest())
			if err != nil {
				return nil, status.Errorf(codes.InvalidArgument, "input file %q in %v: %v", f.GetName(), d, err)
			}
			files[fd] = true
			l.inputFiles++
		}
		for _, sub := range dir.GetDirectories() {
			sd, err := digest.FromProto(sub.GetDigest())
			if err != nil {
				return nil, status.Errorf(codes.InvalidArgument, "input directory %q in %v: %v", sub.GetName(), d, err)
			}
			if !seen[sd] {
				seen[sd] = true
				queue = append(queue, sd)
			}
		}
	}
	list := make([]digest.Digest, 0, len(files))
	for d := range files {
		list = append(list, d)
	}
	// FindMissing also counts as a use of every input, so eviction keeps
	// them while the action waits and runs.
	m, err := blobs.FindMissing(ctx, list)
	if err != nil {
		return nil, fmt.Errorf("check inputs: %w", err)
	}
	return append(missing, m...), nil
}

// blobReader is what execution needs of the CAS.
type blobReader interface {
	cas.BlobGetter
	cas.MissingFinder
}
