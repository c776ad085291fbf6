package inputs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
)

// ErrBadOutput is wrapped by the errors for a Command whose working
// directory or declared outputs are malformed: absolute, leaving the input
// root, or declared both as a file and as a directory.
var ErrBadOutput = errors.New("invalid output path")

// OutputKind is what a Command declares an output to be.
type OutputKind int

// Kinds of declared outputs.
const (
	// OutputFile comes from Command.output_files (REAPI v2.0).
	OutputFile OutputKind = iota
	// OutputDirectory comes from Command.output_directories (v2.0).
	OutputDirectory
	// OutputAny comes from Command.output_paths (v2.1): the action decides
	// whether it is a file, a directory or a symlink.
	OutputAny
)

// Output is an output a Command declares.
type Output struct {
	// Path is the path as declared, relative to the working directory;
	// it is what the ActionResult reports.
	Path string
	// Name is the path relative to the input root, cleaned: "." for the
	// input root itself. It never contains "..".
	Name string
	Kind OutputKind
}

// DeclaredOutputs returns the outputs cmd declares: its output_paths when
// it has any (the older fields are then ignored, as REAPI v2.1 says), and
// otherwise its output_files and output_directories. Each path is checked
// and resolved against the working directory; a path that is absolute or
// has a ".." component (in it or in the working directory) wraps
// ErrBadOutput. A path declared twice is returned once.
func DeclaredOutputs(cmd *repb.Command) ([]Output, error) {
	wd, err := relativeName(cmd.GetWorkingDirectory())
	if err != nil {
		return nil, fmt.Errorf("working directory %q: %w", cmd.GetWorkingDirectory(), err)
	}
	var outs []Output
	kinds := map[string]OutputKind{}
	add := func(p string, kind OutputKind) error {
		rel, err := relativeName(p)
		if err != nil {
			return fmt.Errorf("output %q: %w", p, err)
		}
		if rel == "." && kind == OutputFile {
			return fmt.Errorf("%w: output file %q names the working directory", ErrBadOutput, p)
		}
		name := path.Join(wd, rel)
		if k, dup := kinds[name]; dup {
			if k != kind {
				return fmt.Errorf("%w: %q is declared both as a file and as a directory", ErrBadOutput, p)
			}
			return nil
		}
		kinds[name] = kind
		outs = append(outs, Output{Path: p, Name: name, Kind: kind})
		return nil
	}
	if len(cmd.GetOutputPaths()) > 0 {
		for _, p := range cmd.GetOutputPaths() {
			if err := add(p, OutputAny); err != nil {
				return nil, err
			}
		}
		return outs, nil
	}
	for _, p := range cmd.GetOutputFiles() {
		if err := add(p, OutputFile); err != nil {
			return nil, err
		}
	}
	for _, p := range cmd.GetOutputDirectories() {
		if err := add(p, OutputDirectory); err != nil {
			return nil, err
		}
	}
	return outs, nil
}

// relativeName checks a relative slash-separated path and returns it
// cleaned ("." for the empty path). Empty and "." components are tolerated;
// ".." is refused even where it would stay inside the root, so that the
// kernel never resolves one on an action's behalf.
func relativeName(p string) (string, error) {
	if strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("%w: absolute path", ErrBadOutput)
	}
	if strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("%w: NUL byte", ErrBadOutput)
	}
	for _, c := range strings.Split(p, "/") {
		if c == ".." {
			return "", fmt.Errorf("%w: \"..\" component", ErrBadOutput)
		}
	}
	return path.Clean("./" + p), nil
}

// PrepareOutputs creates, under the input root dir, the directories leading
// up to every output cmd declares (see DeclaredOutputs), as REAPI asks of
// the worker, and gives the action's user uid:gid each directory it
// created and the parent of each output, so the action can create its
// outputs there and nowhere else. Declared output_directories are created
// too: REAPI v2.0 says only their parents, but Bazel 4 runs rules that
// write into the directory without creating it (bazel#6393), and an empty
// output directory is what such an action expects. An output directory that
// exists already (the working directory, say) is given to uid:gid.
//
// Paths are resolved inside dir: a symlink of the input tree on the way is
// followed only when it stays inside dir, and an existing non-directory on
// the way is an error. Malformed outputs wrap ErrBadOutput.
func PrepareOutputs(dir string, cmd *repb.Command, uid, gid int) error {
	dirs, err := OutputDirs(cmd)
	if err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	for _, d := range dirs {
		if err := makeParents(root, d.Name, uid, gid); err != nil {
			return fmt.Errorf("output %q: %w", d.Output, err)
		}
	}
	return nil
}

// OutputDir is a directory the worker creates before an action runs.
type OutputDir struct {
	// Name is relative to the input root, cleaned ("." for the root).
	Name string
	// Output is the declared output it is made for, for errors.
	Output string
}

// OutputDirs returns the directories to create before cmd runs, in the
// order to create them: the parent of every declared output, and declared
// output_directories (and the working directory, when it is an output)
// themselves; see PrepareOutputs. Malformed outputs wrap ErrBadOutput.
func OutputDirs(cmd *repb.Command) ([]OutputDir, error) {
	outs, err := DeclaredOutputs(cmd)
	if err != nil {
		return nil, err
	}
	wd, _ := relativeName(cmd.GetWorkingDirectory()) // checked
	dirs := make([]OutputDir, 0, len(outs))
	for _, o := range outs {
		parent := path.Dir(o.Name)
		if o.Name == wd || o.Kind == OutputDirectory {
			parent = o.Name
		}
		dirs = append(dirs, OutputDir{Name: parent, Output: o.Path})
	}
	return dirs, nil
}

// outputDirMode is the mode of the directories PrepareOutputs creates,
// whatever the umask: that of the input tree's directories.
const outputDirMode fs.FileMode = 0o755

// makeParents creates the directory name in root with its missing parents,
// owned by uid:gid and mode 0755, and gives name to uid:gid if it existed.
func makeParents(root *os.Root, name string, uid, gid int) error {
	prefix := "."
	for _, c := range strings.Split(name, "/") {
		prefix = path.Join(prefix, c)
		info, err := root.Stat(prefix)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := root.Mkdir(prefix, outputDirMode); err != nil {
				return err
			}
			if err := root.Chmod(prefix, outputDirMode); err != nil {
				return err
			}
			if err := root.Lchown(prefix, uid, gid); err != nil {
				return err
			}
		case err != nil:
			return err
		case !info.IsDir():
			return fmt.Errorf("%s is not a directory", prefix)
		case prefix == name:
			if err := root.Chown(prefix, uid, gid); err != nil {
				return err
			}
		}
	}
	return nil
}
