package inputs

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
)

// sandboxIDs are the ids the tests give outputs to: another user's when
// the test runs as root, else the test's own (the only ones it may give).
func sandboxIDs() (int, int) {
	if os.Getuid() == 0 {
		return 4242, 4343
	}
	return os.Getuid(), os.Getgid()
}

func owner(t *testing.T, name string) (uid, gid int) {
	t.Helper()
	info, err := os.Lstat(name)
	if err != nil {
		t.Fatal(err)
	}
	st := info.Sys().(*syscall.Stat_t)
	return int(st.Uid), int(st.Gid)
}

func TestDeclaredOutputs(t *testing.T) {
	tests := []struct {
		name    string
		cmd     *repb.Command
		want    []Output
		wantErr string
	}{
		{
			name: "v2.0 fields",
			cmd:  &repb.Command{WorkingDirectory: "wd", OutputFiles: []string{"a.o", "x/b.o"}, OutputDirectories: []string{"gen", ""}},
			want: []Output{{"a.o", "wd/a.o", OutputFile}, {"x/b.o", "wd/x/b.o", OutputFile}, {"gen", "wd/gen", OutputDirectory}, {"", "wd", OutputDirectory}},
		},
		{
			name: "output_paths win",
			cmd:  &repb.Command{OutputFiles: []string{"ignored"}, OutputPaths: []string{"p/q", "r"}},
			want: []Output{{"p/q", "p/q", OutputAny}, {"r", "r", OutputAny}},
		},
		{
			name: "duplicates and untidy paths",
			cmd:  &repb.Command{OutputFiles: []string{"a//b", "a/b", "./c/"}},
			want: []Output{{"a//b", "a/b", OutputFile}, {"./c/", "c", OutputFile}},
		},
		{name: "absolute", cmd: &repb.Command{OutputFiles: []string{"/etc/passwd"}}, wantErr: "absolute"},
		{name: "dotdot", cmd: &repb.Command{OutputFiles: []string{"../x"}}, wantErr: `".."`},
		{name: "dotdot inside", cmd: &repb.Command{OutputDirectories: []string{"a/../../x"}}, wantErr: `".."`},
		{name: "dotdot in output_paths", cmd: &repb.Command{OutputPaths: []string{"ok", "a/.."}}, wantErr: `".."`},
		{name: "working directory absolute", cmd: &repb.Command{WorkingDirectory: "/tmp", OutputFiles: []string{"a"}}, wantErr: "working directory"},
		{name: "working directory escapes", cmd: &repb.Command{WorkingDirectory: "..", OutputFiles: []string{"a"}}, wantErr: "working directory"},
		{name: "file and directory", cmd: &repb.Command{OutputFiles: []string{"a"}, OutputDirectories: []string{"a"}}, wantErr: "both"},
		{name: "file is the working directory", cmd: &repb.Command{OutputFiles: []string{""}}, wantErr: "names the working directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DeclaredOutputs(tc.cmd)
			if tc.wantErr != "" {
				if !errors.Is(err, ErrBadOutput) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want ErrBadOutput saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("DeclaredOutputs = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestPrepareOutputs(t *testing.T) {
	uid, gid := sandboxIDs()
	root := t.TempDir()
	mk := func(rel string) {
		if err := os.MkdirAll(filepath.Join(root, rel), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mk("wd/out")    // an input directory that will hold an output
	mk("wd/inputs") // one that will not
	if err := os.Symlink("out", filepath.Join(root, "wd/alias")); err != nil {
		t.Fatal(err)
	}
	cmd := &repb.Command{
		WorkingDirectory:  "wd",
		OutputFiles:       []string{"out/a.o", "new/deep/b.o", "alias/c.o"},
		OutputDirectories: []string{"gen/tree"},
	}
	if err := PrepareOutputs(root, cmd, uid, gid); err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{"wd/out", "wd/new", "wd/new/deep", "wd/gen"} {
		if u, g := owner(t, filepath.Join(root, rel)); u != uid || g != gid {
			t.Errorf("%s is owned by %d:%d, want %d:%d", rel, u, g, uid, gid)
		}
		if info, _ := os.Stat(filepath.Join(root, rel)); info.Mode().Perm() != 0o755 {
			t.Errorf("%s has mode %v", rel, info.Mode())
		}
	}
	me, _ := owner(t, root)
	for _, rel := range []string{"wd", "wd/inputs"} {
		if u, _ := owner(t, filepath.Join(root, rel)); u != me {
			t.Errorf("%s was given away to %d", rel, u)
		}
	}
	// Output directories exist, empty and writable, for Bazel 4's rules.
	if u, _ := owner(t, filepath.Join(root, "wd/gen/tree")); u != uid {
		t.Errorf("the output directory is not created for the action (owner %d)", u)
	}
	if info, err := os.Lstat(filepath.Join(root, "wd/alias")); err != nil || info.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the symlink in the input tree was replaced: %v", err)
	}
}

func TestPrepareOutputsWorkingDirectoryAsOutput(t *testing.T) {
	uid, gid := sandboxIDs()
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "wd"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := &repb.Command{WorkingDirectory: "wd", OutputDirectories: []string{""}}
	if err := PrepareOutputs(root, cmd, uid, gid); err != nil {
		t.Fatal(err)
	}
	if u, g := owner(t, filepath.Join(root, "wd")); u != uid || g != gid {
		t.Fatalf("working directory owned by %d:%d", u, g)
	}
}

// TestPrepareOutputsRefusesEscapes checks that outputs whose parents leave
// the input root through symlinks of the input tree are refused and that
// nothing is created or given away outside the root.
func TestPrepareOutputsRefusesEscapes(t *testing.T) {
	uid, gid := sandboxIDs()
	base := t.TempDir()
	outside := filepath.Join(base, "outside")
	if err := os.Mkdir(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(base, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "abs")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../outside", filepath.Join(root, "rel")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	me, _ := owner(t, outside)
	for _, out := range []string{"abs/x.o", "abs/sub/x.o", "rel/x.o", "rel/sub/x.o", "file/x.o"} {
		err := PrepareOutputs(root, &repb.Command{OutputFiles: []string{out}}, uid, gid)
		if err == nil || !strings.Contains(err.Error(), out) {
			t.Errorf("output %q: error %v, want a refusal naming it", out, err)
		}
	}
	if left, _ := os.ReadDir(outside); len(left) != 0 {
		t.Fatalf("created outside the root: %v", left)
	}
	if u, _ := owner(t, outside); u != me {
		t.Fatalf("gave a directory outside the root to %d", u)
	}
}
