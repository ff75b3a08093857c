//go:build unix

package pglocal

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// Signals the postmaster understands (see the PostgreSQL manual, "Shutting
// Down the Server").
const (
	sigFast      = syscall.SIGINT  // fast shutdown: roll back, disconnect, checkpoint
	sigImmediate = syscall.SIGQUIT // immediate shutdown: no checkpoint; recovery at next start
)

// runAs says which OS user runs initdb and postgres: nil for the current
// user. initdb and postgres refuse to run as root, so as root it is the
// postgres user.
type runAs struct {
	uid, gid uint32
	name     string
}

// serverUser returns who runs the server: nil when the current user can,
// else the postgres OS user, or an error when there is none.
func serverUser() (*runAs, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pglocal: running as root, and initdb and postgres refuse to run as root; "+
			"there is no postgres OS user to run them as (%w): create one (for example useradd --system postgres) "+
			"or run as a non-root user", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("pglocal: OS user postgres has a non-numeric uid or gid: %w", err)
	}
	return &runAs{uid: uint32(uid), gid: uint32(gid), name: u.Username}, nil
}

// credential returns the credential for exec, nil for the current user.
func (r *runAs) credential() *syscall.Credential {
	if r == nil {
		return nil
	}
	// An empty Groups drops root's supplementary groups.
	return &syscall.Credential{Uid: r.uid, Gid: r.gid, Groups: []uint32{}}
}

// chown hands path to the user, when there is one.
func (r *runAs) chown(path string) error {
	if r == nil {
		return nil
	}
	if err := os.Chown(path, int(r.uid), int(r.gid)); err != nil {
		return fmt.Errorf("pglocal: hand %s to OS user %s: %w", path, r.name, err)
	}
	return nil
}

// String names the user for messages.
func (r *runAs) String() string {
	if r == nil {
		return "the current user"
	}
	return "OS user " + r.name
}

// killGroup sends SIGKILL to the process group led by pid: the postmaster
// and every backend it forked.
func killGroup(pid int) {
	_ = syscall.Kill(-pid, syscall.SIGKILL) // ESRCH: already gone
}

// processAlive reports whether a process with this pid exists.
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// supported reports whether this platform can run a local cluster.
func supported() error { return nil }
