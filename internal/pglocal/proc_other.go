//go:build !unix

package pglocal

import (
	"errors"
	"os"
	"syscall"
)

// Placeholders that let the package build where it cannot run.
var (
	sigFast      os.Signal = os.Kill
	sigImmediate os.Signal = os.Kill
)

type runAs struct{}

func serverUser() (*runAs, error)             { return nil, nil }
func (*runAs) chown(string) error             { return nil }
func (*runAs) String() string                 { return "the current user" }
func sysProcAttr(*runAs) *syscall.SysProcAttr { return nil }
func killGroup(int)                           {}
func processAlive(int) bool                   { return false }

const diesWithParent = false

// supported reports whether this platform can run a local cluster.
func supported() error {
	return errors.New("pglocal: local PostgreSQL clusters are supported on Unix-like systems only")
}

// memoryTempDir returns a memory-backed directory for clusters; there is
// none known on this platform.
func memoryTempDir() string { return "" }
