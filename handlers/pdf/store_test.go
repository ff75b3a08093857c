package pdf_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/txoutbox/txoutbox/handlers/pdf"
	"github.com/txoutbox/txoutbox/relay"
)

func put(t *testing.T, s pdf.DirStore, name, content string) {
	t.Helper()
	if err := s.Put(context.Background(), name, strings.NewReader(content)); err != nil {
		t.Fatalf("Put %q: %v", name, err)
	}
}

func TestDirStorePutAndOverwrite(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := pdf.DirStore{Dir: dir}
	put(t, s, "a/b/doc.pdf", "first")
	path := filepath.Join(dir, "a", "b", "doc.pdf")
	if got := string(readFile(t, path)); got != "first" {
		t.Fatalf("content %q; want %q", got, "first")
	}
	put(t, s, "a/b/doc.pdf", "second")
	if got := string(readFile(t, path)); got != "second" {
		t.Fatalf("content %q after the overwrite; want %q", got, "second")
	}
	if got := files(t, dir); !slices.Equal(got, []string{"a/b/doc.pdf"}) {
		t.Fatalf("files %q; want just the document", got)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm&^0o640 != 0 {
		t.Fatalf("file mode %v; want at most 0640 by default", perm)
	}

	s.FileMode = 0o600
	put(t, s, "private.pdf", "x")
	if info, err := os.Stat(filepath.Join(dir, "private.pdf")); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("file mode with FileMode 0600: %v, %v", info.Mode(), err)
	}
}

// Open reads a stored document back by its name, and refuses names that
// are not local relative paths.
func TestDirStoreOpen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := pdf.DirStore{Dir: dir}
	put(t, s, "a/doc.pdf", "content")
	f, err := s.Open("a/doc.pdf")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(f)
	if cerr := f.Close(); err != nil || cerr != nil || string(b) != "content" {
		t.Fatalf("read %q, %v, %v; want %q", b, err, cerr, "content")
	}
	if _, err := s.Open("a/missing.pdf"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing document: %v; want fs.ErrNotExist", err)
	}
	for _, name := range []string{"../x.pdf", "/etc/passwd", "a/../../x", ".hidden"} {
		if _, err := s.Open(name); !errors.Is(err, pdf.ErrInvalidName) {
			t.Errorf("name %q: %v; want ErrInvalidName", name, err)
		}
	}
}

// PublicURL is BaseURL and the escaped name, or nothing without BaseURL.
func TestDirStorePublicURL(t *testing.T) {
	t.Parallel()
	name := "pdf.invoice/inv 17#x.pdf"
	if got := (pdf.DirStore{Dir: "d"}).PublicURL(name); got != "" {
		t.Errorf("without BaseURL: %q; want none", got)
	}
	for _, base := range []string{"https://files.example.com/docs", "https://files.example.com/docs/"} {
		if got, want := (pdf.DirStore{Dir: "d", BaseURL: base}).PublicURL(name), "https://files.example.com/docs/pdf.invoice/inv%2017%23x.pdf"; got != want {
			t.Errorf("BaseURL %q: %q; want %q", base, got, want)
		}
	}
}

// A relative Dir is relative to the working directory. Not parallel:
// t.Chdir changes the whole process's working directory.
func TestDirStoreRelativeDir(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.Mkdir("docs", 0o755); err != nil {
		t.Fatal(err)
	}
	put(t, pdf.DirStore{Dir: "docs"}, "x.pdf", "x")
	if got := string(readFile(t, filepath.Join(dir, "docs", "x.pdf"))); got != "x" {
		t.Fatalf("content %q; want %q", got, "x")
	}
}

// failingReader yields n bytes, then fails.
type failingReader struct {
	n   int
	err error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, r.err
	}
	k := min(len(p), r.n)
	for i := range p[:k] {
		p[i] = 'x'
	}
	r.n -= k
	return k, nil
}

// A write that fails midway leaves no file, no temporary file, and the
// previous version of the document untouched.
func TestDirStoreFailedWriteLeavesNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := pdf.DirStore{Dir: dir}
	errBroken := errors.New("connection reset while streaming")

	err := s.Put(context.Background(), "p/doc.pdf", &failingReader{n: 100 << 10, err: errBroken})
	if !errors.Is(err, errBroken) {
		t.Fatalf("error %v; want the reader's", err)
	}
	if _, ok := errors.AsType[*relay.PermanentError](err); ok {
		t.Fatalf("a failed write is permanent: %v", err)
	}
	if got := files(t, dir); len(got) != 0 {
		t.Fatalf("files left by a failed write: %q", got)
	}

	put(t, s, "p/doc.pdf", "version 1")
	if err := s.Put(context.Background(), "p/doc.pdf", &failingReader{n: 3, err: errBroken}); err == nil {
		t.Fatal("no error from a failing reader")
	}
	if got := files(t, dir); !slices.Equal(got, []string{"p/doc.pdf"}) {
		t.Fatalf("files %q after a failed overwrite; want just the old document", got)
	}
	if got := string(readFile(t, filepath.Join(dir, "p", "doc.pdf"))); got != "version 1" {
		t.Fatalf("content %q after a failed overwrite; want the old version", got)
	}
}

// cancellingReader cancels its context after the first read.
type cancellingReader struct {
	r      io.Reader
	cancel context.CancelFunc
	reads  int
}

func (c *cancellingReader) Read(p []byte) (int, error) {
	c.reads++
	if c.reads == 2 {
		c.cancel()
	}
	return c.r.Read(p[:min(len(p), 1024)])
}

// A context that ends mid-write, or before, stores nothing.
func TestDirStoreHonoursContext(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := pdf.DirStore{Dir: dir}

	ctx, cancel := context.WithCancel(context.Background())
	r := &cancellingReader{r: bytes.NewReader(make([]byte, 64<<10)), cancel: cancel}
	if err := s.Put(ctx, "doc.pdf", r); !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v; want context.Canceled", err)
	}
	if r.reads > 3 {
		t.Fatalf("%d reads after the context ended", r.reads-2)
	}
	if err := s.Put(ctx, "doc.pdf", strings.NewReader("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v with a done context; want context.Canceled", err)
	}
	if got := files(t, dir); len(got) != 0 {
		t.Fatalf("files left by cancelled writes: %q", got)
	}
}

// Names that are not local relative paths are refused, permanently, and
// nothing is written anywhere.
func TestDirStoreRefusesBadNames(t *testing.T) {
	t.Parallel()
	parent := t.TempDir()
	dir := filepath.Join(parent, "store")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := pdf.DirStore{Dir: dir}
	for _, name := range []string{
		"", ".", "..", "../x.pdf", "a/../../x.pdf", "a/../x.pdf", "/abs.pdf", "a//b.pdf", "a/", "./a.pdf",
		`..\x.pdf`, `a\b.pdf`, "c:x.pdf", ".hidden.pdf", "a/.tmp.pdf", "nul\x00.pdf", "new\nline.pdf",
		"bad-\xff.pdf", strings.Repeat("x", 201), strings.Repeat("a/", 600) + "x",
	} {
		err := s.Put(context.Background(), name, strings.NewReader("x"))
		if !errors.Is(err, pdf.ErrInvalidName) {
			t.Errorf("name %q: error %v; want ErrInvalidName", name, err)
			continue
		}
		if _, ok := errors.AsType[*relay.PermanentError](err); !ok {
			t.Errorf("name %q: a refused name is not permanent: %v", name, err)
		}
	}
	if got := files(t, parent); len(got) != 0 {
		t.Fatalf("files written for refused names: %q", got)
	}
}

// A symbolic link inside the directory cannot lead a write outside it.
func TestDirStoreSymlinkCannotEscape(t *testing.T) {
	t.Parallel()
	dir, outside := t.TempDir(), t.TempDir()
	if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := (pdf.DirStore{Dir: dir}).Put(context.Background(), "link/x.pdf", strings.NewReader("x")); err == nil {
		t.Fatal("a write through a symbolic link out of the directory succeeded")
	}
	if got := files(t, outside); len(got) != 0 {
		t.Fatalf("files written outside the directory: %q", got)
	}
}

// File system failures are the environment's: returned as they are, and
// retried (not permanent).
func TestDirStoreFileSystemErrorsAreRetried(t *testing.T) {
	t.Parallel()
	parent := t.TempDir()
	notDir := filepath.Join(parent, "file")
	if err := os.WriteFile(notDir, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dir string
		is  error
	}{
		{filepath.Join(parent, "missing"), fs.ErrNotExist},
		{notDir, nil},
	} {
		err := (pdf.DirStore{Dir: tc.dir}).Put(context.Background(), "x.pdf", strings.NewReader("x"))
		if err == nil {
			t.Fatalf("Dir %s: no error", tc.dir)
		}
		if tc.is != nil && !errors.Is(err, tc.is) {
			t.Fatalf("Dir %s: error %v; want %v", tc.dir, err, tc.is)
		}
		if _, ok := errors.AsType[*relay.PermanentError](err); ok {
			t.Fatalf("Dir %s: a file system error is permanent: %v", tc.dir, err)
		}
	}
	// A name whose directory part is an existing file.
	dir := t.TempDir()
	put(t, pdf.DirStore{Dir: dir}, "a", "x")
	err := (pdf.DirStore{Dir: dir}).Put(context.Background(), "a/b.pdf", strings.NewReader("x"))
	if err == nil {
		t.Fatal("no error writing under a file")
	}
	if _, ok := errors.AsType[*relay.PermanentError](err); ok {
		t.Fatalf("a file system error is permanent: %v", err)
	}
}

// Concurrent writes of one name (two relays, a stale attempt) leave one
// whole document and no temporary files.
func TestDirStoreConcurrentPuts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := pdf.DirStore{Dir: dir}
	const n = 16
	contents := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		contents[i] = strings.Repeat(fmt.Sprintf("%02d", i), 32<<10)
		wg.Go(func() {
			if err := s.Put(context.Background(), "d/doc.pdf", strings.NewReader(contents[i])); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := files(t, dir); !slices.Equal(got, []string{"d/doc.pdf"}) {
		t.Fatalf("files %q; want one document", got)
	}
	if got := string(readFile(t, filepath.Join(dir, "d", "doc.pdf"))); !slices.Contains(contents, got) {
		t.Fatalf("the document is none of the versions written (%d bytes)", len(got))
	}
}
