// Package fuseinput will present an action's REAPI input tree as a FUSE file
// system that fetches directories and files from the CAS only when the
// action looks them up or reads them, records what was read, and collects
// writes in a per-action layer.
package fuseinput
