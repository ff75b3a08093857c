package pdf

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"runtime"
	"strings"
	"unicode/utf8"

	"github.com/txoutbox/txoutbox/relay"
)

// BlobStore stores rendered documents. Implement it for an object store
// (S3, GCS, a database table) and give it as Config.Store.
type BlobStore interface {
	// Put stores the content read from r under name, replacing any object
	// of that name. name is a slash-separated relative path such as
	// "pdf.invoice/inv-17-<hash>.pdf", the same for every attempt of an
	// entry; it is the document's key within the store, and what the
	// entry's result records (Stored.Name).
	//
	// Put must be all or nothing: when it returns an error, the object
	// under name is either absent or the one stored before, never partly
	// written. It must stop early, with an error, when ctx is done.
	//
	// An error is retried by the relay; wrap it with relay.Permanent when
	// no retry can succeed for this object (the store refuses the name,
	// say), to dead-letter the entry at once.
	Put(ctx context.Context, name string, r io.Reader) error
}

// PublicStore is a BlobStore whose documents can be fetched at a URL the
// people they are for may see: a CDN or a file server in front of the
// store. The handler records PublicURL(name) in the entry's result
// (Stored.URL) when it is not empty.
type PublicStore interface {
	BlobStore
	// PublicURL returns the URL at which the document stored under name
	// can be fetched, or "" for none. The URL reaches end users (the
	// entry's result is streamed to browsers by package progress), so it
	// must show nothing the store keeps private: no local path, no
	// credentials. It should be a function of name alone, so that it can
	// be computed ahead of time like ObjectName.
	PublicURL(name string) string
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

	// BaseURL, when set, is the URL at which a web server or CDN serves
	// Dir: PublicURL(name) is BaseURL, a slash and the name with each
	// element path-escaped, and the handler records it in the entry's
	// result. An absolute http or https URL without query or fragment.
	// Default "": documents have no public URL, and results carry only
	// their names.
	BaseURL string
}

// maxNameLen and maxSegmentLen bound the names DirStore accepts, in bytes.
// A segment leaves room within the usual 255-byte file name limit for the
// temporary file's dot, suffix and random part.
const (
	maxNameLen    = 1024
	maxSegmentLen = 200
)

// Put stores r's content as the file Dir/name.
func (s DirStore) Put(ctx context.Context, name string, r io.Reader) error {
	if err := checkName(name); err != nil {
		return err
	}
	if errs := s.validate(); len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := ctxErr(ctx); err != nil {
		return err
	}
	root, err := os.OpenRoot(s.Dir)
	if err != nil {
		return fmt.Errorf("pdf: DirStore: %w", err)
	}
	defer root.Close()

	mode := s.FileMode.Perm()
	if mode == 0 {
		mode = 0o640
	}
	dir, base := path.Split(name)
	dir = path.Clean(dir) // "." when name has no directory
	if err := ensureDir(root, dir, mode|(mode&0o444)>>2); err != nil {
		return err
	}
	tmp, err := tempName(dir, base)
	if err != nil {
		return err
	}
	if err := writeFile(ctx, root, tmp, mode, r); err != nil {
		return errors.Join(err, removeTemp(root, tmp))
	}
	// A cancelled attempt stores nothing, even with the data all written.
	if err := ctxErr(ctx); err != nil {
		return errors.Join(err, removeTemp(root, tmp))
	}
	if err := root.Rename(tmp, name); err != nil {
		return errors.Join(fmt.Errorf("pdf: DirStore: %w", err), removeTemp(root, tmp))
	}
	if err := syncDir(root, dir); err != nil {
		// The file is in place but its rename may not survive a crash:
		// fail the attempt, and the retry writes it again.
		return err
	}
	return nil
}

// Open opens the document stored under name (a Stored.Name) for reading.
// Like Put, it refuses names that are not local relative paths
// (ErrInvalidName) and resolves them with os.Root, so no name reaches
// outside Dir. A missing document is an error matching fs.ErrNotExist.
func (s DirStore) Open(name string) (*os.File, error) {
	if err := checkName(name); err != nil {
		return nil, errors.Unwrap(err) // not a relay error here
	}
	if errs := s.validate(); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	root, err := os.OpenRoot(s.Dir)
	if err != nil {
		return nil, fmt.Errorf("pdf: DirStore: %w", err)
	}
	defer root.Close() // the file stays open
	f, err := root.Open(name)
	if err != nil {
		return nil, fmt.Errorf("pdf: DirStore: %w", err)
	}
	return f, nil
}

// PublicURL returns BaseURL, a slash and name with each element
// path-escaped, or "" when BaseURL is empty.
func (s DirStore) PublicURL(name string) string {
	if s.BaseURL == "" {
		return ""
	}
	elems := strings.Split(name, "/")
	for i, e := range elems {
		elems[i] = url.PathEscape(e)
	}
	return strings.TrimSuffix(s.BaseURL, "/") + "/" + strings.Join(elems, "/")
}

// validate reports what makes a DirStore unusable whatever the name. New
// calls it, so the mistake shows at registration.
func (s DirStore) validate() []error {
	var errs []error
	if s.Dir == "" {
		errs = append(errs, configErr("Store.Dir", "empty; set the directory to store documents in"))
	}
	if s.BaseURL != "" {
		u, err := url.Parse(s.BaseURL)
		switch {
		case err != nil:
			errs = append(errs, configErr("Store.BaseURL", "does not parse as a URL"))
		case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
			errs = append(errs, configErr("Store.BaseURL", "%q is not an absolute http or https URL", s.BaseURL))
		case u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
			errs = append(errs, configErr("Store.BaseURL", "%q has user information, a query or a fragment", s.BaseURL))
		}
	}
	return errs
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
