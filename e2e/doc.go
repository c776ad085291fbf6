// Package e2e holds mound's end-to-end tests: they build cmd/mound, start it
// as a separate process on ports chosen by the kernel, and drive it with real
// clients installed from Debian (Bazel 4.2.3 from bazel-bootstrap), the way a
// user would. The package has no code of its own outside its tests.
//
// A test goes through three steps: mound_test.go builds and starts the
// server and stops it when the test ends; bazel_test.go copies a workspace
// from testdata/ into a temporary directory, points it at the local
// stand-ins for rules_cc and rules_java (Bazel 4 would download them
// otherwise, and the tests run offline), and runs Bazel with its own output
// root; the test then reads Bazel's "INFO: N processes: ..." summary to see
// where each action ran.
//
// The tests need bazel on PATH; scripts/install-test-deps.sh installs it.
package e2e
