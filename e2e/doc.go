// Package e2e holds mound's end-to-end tests: they build cmd/mound, start it
// as a separate process on ports chosen by the kernel, and drive it with real
// clients installed from Debian (Bazel 4.2.3 from bazel-bootstrap), the way a
// user would. The package has no code of its own outside its tests.
//
// A test goes through three steps: mound_test.go builds and starts the
// server and stops it when the test ends, and workerd_test.go does the same
// for worker daemons (which a test may also SIGKILL), waiting until mound's
// Admin service lists them; bazel_test.go copies a workspace from testdata/
// into a temporary directory, points it at the local stand-ins for
// rules_cc, rules_java and remote_coverage_tools (Bazel 4 would download
// them otherwise, and the tests run offline), and runs Bazel with its own
// output root; the test then reads Bazel's "INFO: N processes: ..." summary
// to see where each action ran.
//
// testdata/cworkspace is a small C project (libraries, a binary, a test, a
// genrule, and a package that does not compile); testdata/shworkspace holds
// shell targets that probe remote execution: slow actions, a test that
// outlives its timeout, and genrules that try to leave the sandbox. The
// processes such targets start carry a marker unique to the run in their
// command line, so a test can look for them in the host's /proc.
//
// The tests need bazel on PATH; scripts/install-test-deps.sh installs it.
package e2e
