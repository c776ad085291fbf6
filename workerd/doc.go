// Package workerd will be the worker daemon: it takes actions from the
// scheduler, presents their inputs (hardlinked from a local blob cache, or
// lazily through package fuseinput), runs each in Linux namespaces as an
// unprivileged user, and uploads the outputs.
package workerd
