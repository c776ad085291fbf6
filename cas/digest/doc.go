// Package digest holds the one value type mound uses for a content digest
// (SHA-256 hash and size), parses and validates it in one place, and checks
// incoming bytes against it in one function (Verifier).
package digest
