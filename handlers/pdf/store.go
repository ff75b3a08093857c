package pdf

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"unicode/utf8"

	"github.com/txoutbox/txoutbox/relay"
)

// BlobStore stores rendered documents. Implement it for an object store
// (S3, GCS, a database table) and pass it to New or Register.
type BlobStore interface {
	// Put stores the content read from r under name, replacing any object
	// of that name, and returns where it went (a path, a URL) for the
	// entry's result. name is a slash-separated relative path such as
	// "pdf.invoice/inv-17-<hash>.pdf", the same for every attempt of an
	// entry.
	//
	// Put must be all or nothing: when it returns an error, the object
	// under name is either absent or the one stored before, never partly
	// written. It must stop early, with an error, when ctx is done.
	//
	// An error is retried by the relay; wrap it with relay.Permanent when
	// no retry can succeed for this object (the store refuses the name,
	// say), to dead-letter the entry at once.
	Put(ctx context.Context, name string, r io.Reader) (location string, err error)
}

// DirStore is a BlobStore that writes documents as files under a local
// directory. The zero value is not usable: set Dir.
//
// Put writes to a temporary file in the object's directory, fsyncs it,
// renames it over the final name and fsyncs the directory, so a reader
// sees the old document or the whole new one, never a partial file, and a
// failed or cancelled write leaves nothing behind. Temporary files are
// named ".<name>.tmp-<random>"; only a crash of the process in the middle
// of a write can leave one, and no object name ever starts with '.', so
// such leftovers are never mistaken for documents and are safe to delete.
//
// Names are resolved with os.Root, so neither a name nor a symbolic link
// inside Dir can reach a file outside it. Names that are not local
// relative paths are refused with ErrInvalidName, wrapped in
// relay.Permanent.
//
// Failures of the file system (a full disk, a permission denied, a missing
// or read-only directory, an I/O error) are returned as they are, and so
// are retried by the relay: they come from the environment, not from the
// entry, and the entry succeeds once an operator fixes them, within the
// entry's attempts. Only a refused name is permanent.
type DirStore struct {
	// Dir is the directory under which documents are stored, required. It
	// must exist; subdirectories for name prefixes are created as needed.
	Dir string

	// FileMode is the permission of stored files (before the umask). Zero
	// means 0o640: documents such as invoices carry personal data.
	// Directories get the same bits plus search (x) wherever read (r) is
	// set, so 0o640 gives 0o750.
	FileMode fs.FileMode
}

// maxNameLen and maxSegmentLen bound the names DirStore accepts, in bytes.
// A segment leaves room within the usual 255-byte file name limit for the
// temporary file's dot, suffix and random part.
const (
	maxNameLen    = 1024
	maxSegmentLen = 200
)

// Put stores r's content as the file Dir/name. It returns the file's
// absolute path.
func (s DirStore) Put(ctx context.Context, name string, r io.Reader) (string, error) {
	if err := checkName(name); err != nil {
		return "", err
	}
	if err := s.validate(); err != nil {
		return "", err
	}
	if err := ctxErr(ctx); err != nil {
		return "", err
	}
	abs, err := filepath.Abs(s.Dir)
	if err != nil {
		return "", fmt.Errorf("pdf: DirStore: %w", err)
	}
	root, err := os.OpenRoot(abs)
	if err != nil {
		return "", fmt.Errorf("pdf: DirStore: %w", err)
	}
	defer root.Close()

	mode := s.FileMode.Perm()
	if mode == 0 {
		mode = 0o640
	}
	dir, base := path.Split(name)
	dir = path.Clean(dir) // "." when name has no directory
	if err := ensureDir(root, dir, mode|(mode&0o444)>>2); err != nil {
		return "", err
	}
	tmp, err := tempName(dir, base)
	if err != nil {
		return "", err
	}
	if err := writeFile(ctx, root, tmp, mode, r); err != nil {
		return "", errors.Join(err, removeTemp(root, tmp))
	}
	// A cancelled attempt stores nothing, even with the data all written.
	if err := ctxErr(ctx); err != nil {
		return "", errors.Join(err, removeTemp(root, tmp))
	}
	if err := root.Rename(tmp, name); err != nil {
		return "", errors.Join(fmt.Errorf("pdf: DirStore: %w", err), removeTemp(root, tmp))
	}
	if err := syncDir(root, dir); err != nil {
		// The file is in place but its rename may not survive a crash:
		// fail the attempt, and the retry writes it again.
		return "", err
	}
	return filepath.Join(abs, filepath.FromSlash(name)), nil
}

// validate reports a DirStore that cannot work whatever the name. New
// calls it, so the mistake shows at registration.
func (s DirStore) validate() error {
	if s.Dir == "" {
		return configErr("DirStore.Dir", "empty; set the directory to store documents in")
	}
	return nil
}

// checkName validates an object name for DirStore.
func checkName(name string) error {
	bad := func(reason string) error {
		return relay.Permanent(fmt.Errorf("%w %q: %s", ErrInvalidName, name, reason))
	}
	switch {
	case len(name) > maxNameLen:
		return bad(fmt.Sprintf("longer than %d bytes", maxNameLen))
	case !utf8.ValidString(name):
		return bad("not valid UTF-8")
	case !fs.ValidPath(name) || name == ".":
		return bad("not a relative slash-separated path without empty, \".\" or \"..\" elements")
	}
	for i, c := range name {
		if c < 0x20 || c == 0x7f || c == '\\' || c == ':' {
			return bad(fmt.Sprintf("character %q at byte %d", c, i))
		}
	}
	for seg := range strings.SplitSeq(name, "/") {
		if seg[0] == '.' {
			return bad("an element starts with '.' (reserved for temporary files)")
		}
		if len(seg) > maxSegmentLen {
			return bad(fmt.Sprintf("an element is longer than %d bytes", maxSegmentLen))
		}
	}
	return nil
}

// ensureDir creates dir and its missing parents, and fsyncs their parents
// so the new directories survive a crash along with the file put in them.
func ensureDir(root *os.Root, dir string, perm fs.FileMode) error {
	if dir == "." {
		return nil
	}
	if _, err := root.Stat(dir); err == nil {
		return nil
	}
	if err := root.MkdirAll(dir, perm); err != nil {
		return fmt.Errorf("pdf: DirStore: %w", err)
	}
	for d := path.Dir(dir); ; d = path.Dir(d) {
		if err := syncDir(root, d); err != nil {
			return err
		}
		if d == "." {
			return nil
		}
	}
}

func tempName(dir, base string) (string, error) {
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return "", fmt.Errorf("pdf: DirStore: temporary name: %w", err)
	}
	return path.Join(dir, "."+base+".tmp-"+hex.EncodeToString(rnd[:])), nil
}

// writeFile creates tmp (which must not exist), copies r into it while ctx
// is live, and fsyncs and closes it.
func writeFile(ctx context.Context, root *os.Root, tmp string, mode fs.FileMode, r io.Reader) error {
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("pdf: DirStore: %w", err)
	}
	if _, err := io.Copy(f, ctxReader{ctx: ctx, r: r}); err != nil {
		return errors.Join(fmt.Errorf("pdf: DirStore: writing %s: %w", tmp, err), f.Close())
	}
	if err := f.Sync(); err != nil {
		return errors.Join(fmt.Errorf("pdf: DirStore: %w", err), f.Close())
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("pdf: DirStore: %w", err)
	}
	return nil
}

func removeTemp(root *os.Root, tmp string) error {
	if err := root.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("pdf: DirStore: removing the temporary file: %w", err)
	}
	return nil
}

// syncDir fsyncs a directory so that a rename in it is durable.
func syncDir(root *os.Root, dir string) error {
	if runtime.GOOS == "windows" {
		return nil // directories cannot be fsynced there; rename is durable enough
	}
	d, err := root.Open(dir)
	if err != nil {
		return fmt.Errorf("pdf: DirStore: %w", err)
	}
	if err := d.Sync(); err != nil {
		return errors.Join(fmt.Errorf("pdf: DirStore: syncing %s: %w", dir, err), d.Close())
	}
	if err := d.Close(); err != nil {
		return fmt.Errorf("pdf: DirStore: %w", err)
	}
	return nil
}

// ctxReader stops a copy with ctx's error once ctx is done. It has only
// Read, so io.Copy cannot bypass it through WriterTo.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := ctxErr(c.ctx); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
