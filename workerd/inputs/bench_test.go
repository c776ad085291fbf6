package inputs

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/mound-build/mound/cas/memstore"
	"github.com/mound-build/mound/cas/storetest"
)

// BenchmarkMaterializeWarm lays out a tree of 20,000 small files (200
// directories of 100, every content distinct, one in ten executable) whose
// contents are all in the blob cache already: the cost of reading the
// Directory messages and making directories and hardlinks.
func BenchmarkMaterializeWarm(b *testing.B) {
	const dirs, perDir = 200, 100
	ctx := storetest.Context(b)
	mem := memstore.New()
	root := &repb.Directory{}
	for i := range dirs {
		dir := &repb.Directory{}
		for j := range perDir {
			d := storetest.Put(b, mem, fmt.Appendf(nil, "// file %d of directory %d\n", j, i))
			dir.Files = append(dir.Files, fileNode(fmt.Sprintf("f%03d.h", j), d, j%10 == 0))
		}
		root.Directories = append(root.Directories, dirNode(fmt.Sprintf("d%03d", i), storetest.PutMessage(b, mem, dir)))
	}
	rootDigest := storetest.PutMessage(b, mem, root)
	base := b.TempDir()
	src, _ := newSource(b, mem, base)
	if _, err := Materialize(ctx, src, rootDigest, filepath.Join(base, "warmup")); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dir := filepath.Join(base, fmt.Sprint("run", i))
		stats, err := Materialize(ctx, src, rootDigest, dir)
		if err != nil {
			b.Fatal(err)
		}
		if stats.Files != dirs*perDir {
			b.Fatalf("%d files", stats.Files)
		}
		b.StopTimer()
		if err := os.RemoveAll(dir); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(dirs*perDir*b.N)/b.Elapsed().Seconds(), "files/s")
}
