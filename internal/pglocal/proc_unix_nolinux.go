//go:build unix && !linux

package pglocal

import "syscall"

// sysProcAttr puts a server process in a process group of its own and runs
// it as r. This platform has no parent-death signal: a server whose test
// process dies without Close keeps running until it is stopped.
func sysProcAttr(r *runAs) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		Setpgid:    true,
		Credential: r.credential(),
	}
}

// diesWithParent reports whether servers die with the process that
// started them.
const diesWithParent = false

// memoryTempDir returns a memory-backed directory for clusters; there is
// none known on this platform.
func memoryTempDir() string { return "" }
