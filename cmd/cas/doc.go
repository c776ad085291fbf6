// Command cas moves files and directory trees in and out of a REAPI
// server's content-addressed store, and asks it which blobs it holds (see
// usage in main.go for the commands and exit statuses).
//
// It only parses flags and wires packages together: cas/remote is its view
// of the server's CAS, cas/tree turns directories into REAPI trees and
// back. A progress decorator around the remote client counts the bytes
// that move and draws a bar on stderr when stderr is a terminal.
package main
