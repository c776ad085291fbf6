package outputs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"syscall"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/workerd/inputs"
)

// Store is what Collect and UploadFile need of a CAS.
type Store interface {
	cas.BlobPutter
	cas.MissingFinder
}

// ErrWrongType is wrapped by the error for an output declared in
// output_files that is a directory, or in output_directories that is a
// file: REAPI makes that a FAILED_PRECONDITION of the execution.
var ErrWrongType = errors.New("output has the wrong type")

// file is a regular file to report, hashed once however often it appears.
type file struct {
	name string // relative to the input root
	exec bool
	size int64
	d    digest.Digest // set by hashFiles
}

// collector gathers the outputs of one action.
type collector struct {
	view  View
	known KnownDigests     // view's, or nil
	files map[string]*file // by name
	order []*file          // values of files, in the order found
}

// found is a declared output as it was found.
type found struct {
	out  inputs.Output
	file *file    // a regular file, or
	dir  *scanned // a directory, or
	link string   // a symlink's target
	// linkToDir says a symlink's target is a directory; it decides the
	// deprecated field an output_paths symlink goes in.
	linkToDir bool
}

// Collect finds the outputs cmd declares in view, the input root after the
// action ran, stores their blobs in store and returns the ActionResult's
// output fields (the caller sets the exit code, stdout, stderr and
// metadata). Outputs are reported under their declared paths. A file whose
// digest view knows (KnownDigests) is not read to hash it. An absent output
// is left out; one found with the wrong type wraps ErrWrongType; a path the
// view refuses (a DirView refuses one that leaves the directory through a
// symlink), a malformed declaration (inputs.ErrBadOutput) or a file type
// REAPI cannot represent (a socket, a device) is an error, as is any failure
// to read or store.
func Collect(ctx context.Context, view View, cmd *repb.Command, store Store) (*repb.ActionResult, error) {
	outs, err := inputs.DeclaredOutputs(cmd)
	if err != nil {
		return nil, err
	}
	c := &collector{view: view, files: map[string]*file{}}
	c.known, _ = view.(KnownDigests)
	var founds []*found
	for _, o := range outs {
		f, err := c.find(o)
		if err != nil {
			return nil, fmt.Errorf("output %q: %w", o.Path, err)
		}
		if f != nil {
			founds = append(founds, f)
		}
	}
	if err := c.hashFiles(ctx); err != nil {
		return nil, err
	}
	up := newUpload(c)
	for _, f := range c.order {
		up.addFile(f)
	}
	result := &repb.ActionResult{}
	for _, f := range founds {
		switch {
		case f.file != nil:
			result.OutputFiles = append(result.OutputFiles, &repb.OutputFile{
				Path: f.out.Path, Digest: f.file.d.Proto(), IsExecutable: f.file.exec,
			})
		case f.dir != nil:
			od, err := up.addTree(f.dir)
			if err != nil {
				return nil, fmt.Errorf("output %q: %w", f.out.Path, err)
			}
			od.Path = f.out.Path
			result.OutputDirectories = append(result.OutputDirectories, od)
		default:
			link := &repb.OutputSymlink{Path: f.out.Path, Target: f.link}
			result.OutputSymlinks = append(result.OutputSymlinks, link)
			if f.out.Kind == inputs.OutputDirectory || (f.out.Kind == inputs.OutputAny && f.linkToDir) {
				result.OutputDirectorySymlinks = append(result.OutputDirectorySymlinks, link)
			} else {
				result.OutputFileSymlinks = append(result.OutputFileSymlinks, link)
			}
		}
	}
	if err := up.run(ctx, store); err != nil {
		return nil, err
	}
	return result, nil
}

// find looks up a declared output. It returns nil for an absent one.
func (c *collector) find(o inputs.Output) (*found, error) {
	info, err := c.view.Lstat(o.Name)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	f := &found{out: o}
	switch mode := info.Mode(); {
	case mode&fs.ModeSymlink != 0:
		if f.link, err = c.view.Readlink(o.Name); err != nil {
			return nil, err
		}
		if o.Kind == inputs.OutputAny {
			f.linkToDir = c.leadsToDir(o.Name, f.link)
		}
	case mode.IsRegular():
		if o.Kind == inputs.OutputDirectory {
			return nil, fmt.Errorf("%w: declared as a directory, found a file", ErrWrongType)
		}
		f.file = c.addFile(o.Name, info)
	case mode.IsDir():
		if o.Kind == inputs.OutputFile {
			return nil, fmt.Errorf("%w: declared as a file, found a directory", ErrWrongType)
		}
		if f.dir, err = c.scan(o.Name); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%s is a %v, which REAPI cannot represent", o.Name, mode.Type())
	}
	return f, nil
}

// maxLinkHops bounds the symlinks leadsToDir follows, as MAXSYMLINKS (40)
// bounds the kernel's path resolution.
const maxLinkHops = 40

// leadsToDir reports whether the symlink name, pointing to target, leads to
// a directory inside the view: it decides only which deprecated field an
// output_paths symlink goes in. Targets are resolved lexically against the
// link's directory. An absolute target, or one that leaves the root, counts
// as no directory: it means whatever it means on the machine that reads
// the result, and the worker looks at nothing outside the input root on
// an action's behalf.
func (c *collector) leadsToDir(name, target string) bool {
	for range maxLinkHops {
		if path.IsAbs(target) {
			return false
		}
		name = path.Join(path.Dir(name), target)
		if name == ".." || strings.HasPrefix(name, "../") {
			return false
		}
		info, err := c.view.Lstat(name)
		if err != nil {
			return false
		}
		if info.Mode()&fs.ModeSymlink == 0 {
			return info.IsDir()
		}
		if target, err = c.view.Readlink(name); err != nil {
			return false
		}
	}
	return false
}

// addFile records the regular file name, once.
func (c *collector) addFile(name string, info fs.FileInfo) *file {
	if f, ok := c.files[name]; ok {
		return f
	}
	f := &file{name: name, exec: info.Mode()&0o111 != 0, size: info.Size()}
	c.files[name] = f
	c.order = append(c.order, f)
	return f
}
