package workerd_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/cas/memstore"
	"github.com/mound-build/mound/scheduler/workerpb"
	"github.com/mound-build/mound/workerd"
)

var shPath = []*repb.Command_EnvironmentVariable{{Name: "PATH", Value: "/usr/bin:/bin"}}

// inputAccess returns the InputAccess a worker reported with result.
func inputAccess(t testing.TB, r *repb.ActionResult) *workerpb.InputAccess {
	t.Helper()
	for _, a := range r.GetExecutionMetadata().GetAuxiliaryMetadata() {
		ia := &workerpb.InputAccess{}
		if a.MessageIs(ia) {
			if err := a.UnmarshalTo(ia); err != nil {
				t.Fatal(err)
			}
			return ia
		}
	}
	t.Fatalf("no InputAccess in the auxiliary metadata of %v", r.GetExecutionMetadata())
	return nil
}

// tree stores a tree of files in the root and one subdirectory lib.
func (c *cluster) tree(t testing.TB, files, lib map[string]string) digest.Digest {
	t.Helper()
	node := func(m map[string]string) *repb.Directory {
		d := &repb.Directory{}
		var names []string
		for n := range m {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			d.Files = append(d.Files, &repb.FileNode{Name: n, Digest: c.put(t, []byte(m[n])).Proto()})
		}
		return d
	}
	root := node(files)
	if lib != nil {
		root.Directories = []*repb.DirectoryNode{{Name: "lib", Digest: c.putMsg(t, node(lib)).Proto()}}
	}
	return c.putMsg(t, root)
}

func TestFUSEReportsWhatTheActionDid(t *testing.T) {
	c := newCluster(t, clusterOptions{inputs: workerd.InputsFUSE})
	root := c.tree(t, map[string]string{"in.txt": "in\n", "unused.txt": "u\n"}, map[string]string{"a.h": "a\n", "b.h": "b\n"})
	cmd := &repb.Command{
		Arguments:            []string{"sh", "-c", "cat in.txt lib/a.h > out/o; test -e nope; ls lib > /dev/null; echo x > tmp; mv tmp tmp2; rm tmp2; chmod u+w in.txt"},
		EnvironmentVariables: shPath, OutputFiles: []string{"out/o"},
	}
	resp := c.executeIn(t, root, cmd, 0)
	if resp.GetStatus().GetCode() != 0 || resp.GetResult().GetExitCode() != 0 {
		t.Fatalf("response %v; stderr %q", resp, c.read(t, resp.GetResult().GetStderrDigest()))
	}
	if got := c.read(t, resp.Result.OutputFiles[0].Digest); got != "in\na\n" {
		t.Errorf("output %q", got)
	}
	ia := inputAccess(t, resp.Result)
	if ia.Inputs != "fuse" {
		t.Errorf("inputs %q, want fuse", ia.Inputs)
	}
	if want := []string{"in.txt", "lib/a.h"}; !slices.Equal(ia.Read, want) {
		t.Errorf("read %q, want %q", ia.Read, want)
	}
	for _, c := range []struct {
		field string
		got   []string
		want  string
	}{
		{"missing", ia.Missing, "nope"}, {"listed", ia.Listed, "lib"}, {"created", ia.Created, "tmp"},
		{"created", ia.Created, "out/o"}, {"written", ia.Written, "out/o"}, {"deleted", ia.Deleted, "tmp2"},
		{"chmodded", ia.Chmodded, "in.txt"},
	} {
		if !slices.Contains(c.got, c.want) {
			t.Errorf("%s %q lacks %q", c.field, c.got, c.want)
		}
	}
	if len(ia.Renamed) != 1 || ia.Renamed[0].From != "tmp" || ia.Renamed[0].To != "tmp2" {
		t.Errorf("renamed %v", ia.Renamed)
	}
	if ia.Prefetched != 0 {
		t.Errorf("a first run prefetched %d files", ia.Prefetched)
	}
	// The next run of the same command prefetches what the first read.
	again := inputAccess(t, c.executeIn(t, root, cmd, 0).GetResult())
	if again.Prefetched != 2 {
		t.Errorf("the second run prefetched %d files, want the 2 the first read", again.Prefetched)
	}
}

// hidingStore says it holds a blob that it cannot read: a blob evicted
// between the server's check of an action's inputs and the worker's read.
type hidingStore struct {
	*memstore.Store
	hide digest.Digest
}

func (h hidingStore) Get(ctx context.Context, d digest.Digest, off int64) (io.ReadCloser, error) {
	if d == h.hide {
		return nil, &cas.MissingError{Digest: d}
	}
	return h.Store.Get(ctx, d, off)
}

func TestFUSEInputLostFromTheCASFailsTheAction(t *testing.T) {
	lost := []byte("this input disappears\n")
	hs := hidingStore{hide: digest.OfBytes(lost)}
	c := newCluster(t, clusterOptions{inputs: workerd.InputsFUSE, blobs: &hs})
	hs.Store = c.store
	root := c.tree(t, map[string]string{"in.txt": "in\n", "lost.txt": string(lost)}, nil)
	resp := c.executeIn(t, root, &repb.Command{Arguments: []string{"sh", "-c", "cat in.txt; cat lost.txt"}, EnvironmentVariables: shPath}, 0)
	st := status.FromProto(resp.GetStatus())
	if st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), "lost.txt") {
		t.Fatalf("status %v, want FAILED_PRECONDITION naming lost.txt", st)
	}
	var subjects []string
	for _, d := range st.Details() {
		if pf, ok := d.(*errdetails.PreconditionFailure); ok {
			for _, v := range pf.GetViolations() {
				subjects = append(subjects, v.GetType()+" "+v.GetSubject())
			}
		}
	}
	if want := "MISSING blobs/" + hs.hide.String(); !slices.Contains(subjects, want) {
		t.Errorf("violations %q, want %q so that the client uploads it again", subjects, want)
	}
}

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestFUSEConcurrentActions(t *testing.T) {
	var log syncBuffer
	c := newCluster(t, clusterOptions{inputs: workerd.InputsFUSE, jobs: 4, log: slog.New(slog.NewTextHandler(&log, nil))})
	lib := map[string]string{}
	for i := range 40 {
		lib[fmt.Sprintf("h%d.h", i)] = fmt.Sprintf("header %d\n", i)
	}
	root := c.tree(t, map[string]string{"in.txt": "in\n"}, lib)
	const actions = 16
	var wg sync.WaitGroup
	resps := make([]*repb.ExecuteResponse, actions)
	for i := range actions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			script := fmt.Sprintf("cat lib/h%d.h lib/h%d.h > out/o; echo %d >> out/o; cp in.txt in.txt.new; mv in.txt.new in.txt", i, (i+1)%40, i)
			resps[i] = c.executeIn(t, root, &repb.Command{Arguments: []string{"sh", "-c", script}, EnvironmentVariables: shPath, OutputFiles: []string{"out/o"}}, 0)
		}()
	}
	wg.Wait()
	for i, resp := range resps {
		if resp.GetStatus().GetCode() != 0 || resp.GetResult().GetExitCode() != 0 {
			t.Fatalf("action %d: %v", i, resp)
		}
		want := fmt.Sprintf("header %d\nheader %d\n%d\n", i, (i+1)%40, i)
		if got := c.read(t, resp.Result.OutputFiles[0].Digest); got != want {
			t.Errorf("action %d wrote %q, want %q", i, got, want)
		}
	}
	// Every mount lived in its sandbox's mount namespace: none is left on
	// the host, and every server ended.
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(mounts), "\n") {
		// Fields: id, parent, dev, root, mount point, ... - type ...
		if f := strings.Fields(line); len(f) > 4 && strings.Contains(line, " - fuse.mound ") && f[4] == "/execroot" {
			t.Errorf("a FUSE exec root of the worker is visible on the host: %s", line)
		}
	}
	if strings.Contains(log.String(), "level=ERROR") {
		t.Errorf("the worker logged errors:\n%s", log.String())
	}
}

// TestFUSEPermissionsOfTheActionsUser: the action owns its tree as on any
// file system: an input without a write bit cannot be written until the
// action adds one, and then the write goes to the action's own copy.
func TestFUSEPermissionsOfTheActionsUser(t *testing.T) {
	c := newCluster(t, clusterOptions{inputs: workerd.InputsFUSE})
	root := c.tree(t, map[string]string{"in.txt": "original\n"}, nil)
	script := `if echo x 2>/dev/null > in.txt; then echo wrote-read-only; fi
chmod u+w in.txt && echo changed > in.txt && cat in.txt
mkdir locked && echo secret > locked/f && chmod 000 locked
if cat locked/f 2>/dev/null; then echo read-through-000-dir; fi
chmod 755 locked
id -u`
	resp := c.executeIn(t, root, &repb.Command{Arguments: []string{"sh", "-c", script}, EnvironmentVariables: shPath}, 0)
	if resp.GetResult().GetExitCode() != 0 {
		t.Fatalf("response %v; stderr %q", resp, c.read(t, resp.GetResult().GetStderrDigest()))
	}
	if got, want := c.read(t, resp.Result.StdoutDigest), "changed\n1000\n"; got != want {
		t.Errorf("stdout %q, want %q (no write to a 0444 input, then a write after chmod, as uid 1000); stderr %q", got, want, c.read(t, resp.Result.StderrDigest))
	}
	if got := c.read(t, c.put(t, []byte("original\n")).Proto()); got != "original\n" {
		t.Errorf("the input's blob changed: %q", got)
	}
}
