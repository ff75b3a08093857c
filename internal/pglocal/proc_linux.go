//go:build linux

package pglocal

import (
	"os"
	"syscall"
)

// sysProcAttr puts a server process in a process group of its own (so a
// terminal's Ctrl-C reaches the test process, not the server, and Close
// can kill the whole group), runs it as r, and has the kernel stop it with
// an immediate shutdown when the thread that started it exits. Start keeps
// that thread alive, locked, for as long as the server runs, so the signal
// comes when the test process dies.
func sysProcAttr(r *runAs) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		Setpgid:    true,
		Pdeathsig:  sigImmediate,
		Credential: r.credential(),
	}
}

// diesWithParent reports whether servers die with the process that
// started them.
const diesWithParent = true

// memoryTempDir returns /dev/shm when it is a tmpfs this process may write
// to with at least 1 GiB free, else "".
func memoryTempDir() string {
	const dir = "/dev/shm"
	const tmpfsMagic = 0x01021994
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil || st.Type != tmpfsMagic {
		return ""
	}
	if uint64(st.Bavail)*uint64(st.Bsize) < 1<<30 {
		return ""
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() || fi.Mode().Perm()&0o002 == 0 && os.Geteuid() != 0 {
		return ""
	}
	return dir
}
