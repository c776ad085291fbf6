// Package flags holds flag value types shared by mound's commands.
package flags
