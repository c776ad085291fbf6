package scheduler

import (
	"slices"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/mound-build/mound/scheduler/workerpb"
)

// Platform is the canonical form of a set of platform properties: sorted
// "name=value" lines. It is comparable; the empty Platform is the default
// pool, for actions that ask for nothing in particular.
type Platform string

// PlatformOf canonicalizes REAPI platform properties.
func PlatformOf(p *repb.Platform) Platform {
	var lines []string
	for _, prop := range p.GetProperties() {
		lines = append(lines, prop.GetName()+"="+prop.GetValue())
	}
	return platformOf(lines)
}

// PlatformOfWorker canonicalizes a worker's announced properties.
func PlatformOfWorker(props []*workerpb.Property) Platform {
	var lines []string
	for _, prop := range props {
		lines = append(lines, prop.GetName()+"="+prop.GetValue())
	}
	return platformOf(lines)
}

func platformOf(lines []string) Platform {
	slices.Sort(lines)
	lines = slices.Compact(lines)
	return Platform(strings.Join(lines, "\n"))
}

// Get returns the value of property name, or "".
func (p Platform) Get(name string) string {
	for _, line := range strings.Split(string(p), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && k == name {
			return v
		}
	}
	return ""
}

// String is a readable form such as "{OSFamily=linux, network=on}".
func (p Platform) String() string {
	return "{" + strings.ReplaceAll(string(p), "\n", ", ") + "}"
}
