// Package shellproxy will turn each recipe line of `make SHELL=shellproxy`
// into a REAPI action run against the local tree, apply the files it wrote
// back, and cache it by the files the command actually read.
package shellproxy
