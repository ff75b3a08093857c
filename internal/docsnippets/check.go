package docsnippets

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/scanner"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Problem is one reason a block does not compile.
type Problem struct {
	File string // the Markdown file, or the prelude
	Line int
	Msg  string
}

func (p Problem) String() string { return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg) }

// Config says what to check and how.
type Config struct {
	// Root is the module's root directory (where go.mod is).
	Root string
	// Files are the Markdown files to check, relative to Root.
	Files []string
	// Prelude is the Go source of the stand-ins added to fragments (see
	// the package documentation), and PreludeName its name for messages.
	Prelude     []byte
	PreludeName string
	// Go is the go command; "" means "go" from PATH.
	Go string
}

// Result is what Check found.
type Result struct {
	Blocks   int // ```go blocks compiled
	Skipped  int // blocks with a skip directive
	Problems []Problem
}

// stdPackages are the packages a fragment may use without importing them,
// by the name it uses, besides this module's own packages (found by
// Check: every package of the module, by its package name).
var stdPackages = map[string]string{
	"bufio": "bufio", "bytes": "bytes", "context": "context", "errors": "errors", "flag": "flag",
	"fmt": "fmt", "io": "io", "fs": "io/fs", "log": "log", "slog": "log/slog", "math": "math",
	"maps": "maps", "slices": "slices", "sort": "sort", "strconv": "strconv", "strings": "strings",
	"sync": "sync", "atomic": "sync/atomic", "syscall": "syscall", "testing": "testing", "time": "time",
	"embed": "embed", "json": "encoding/json", "base64": "encoding/base64", "hex": "encoding/hex",
	"sql": "database/sql", "http": "net/http", "httptest": "net/http/httptest", "url": "net/url",
	"net": "net", "mail": "net/mail", "os": "os", "exec": "os/exec", "signal": "os/signal",
	"filepath": "path/filepath", "regexp": "regexp", "runtime": "runtime", "hmac": "crypto/hmac",
	"sha256": "crypto/sha256", "tls": "crypto/tls", "errgroup": "golang.org/x/sync/errgroup",
	"pgx": "github.com/jackc/pgx/v5", "pgxpool": "github.com/jackc/pgx/v5/pgxpool",
	"pgconn": "github.com/jackc/pgx/v5/pgconn", "stdlib": "github.com/jackc/pgx/v5/stdlib",
	"goleak": "go.uber.org/goleak", "fpdf": "github.com/go-pdf/fpdf", "backoff": "github.com/cenkalti/backoff/v4",
	"prometheus": "github.com/prometheus/client_golang/prometheus",
	"promhttp":   "github.com/prometheus/client_golang/prometheus/promhttp",
	"otel":       "go.opentelemetry.io/otel", "trace": "go.opentelemetry.io/otel/trace",
	"metric":   "go.opentelemetry.io/otel/metric",
	"sdktrace": "go.opentelemetry.io/otel/sdk/trace", "sdkmetric": "go.opentelemetry.io/otel/sdk/metric",
	"otelhttp": "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp",
}

// bodyParams are the names in scope in a function-body fragment.
const bodyParams = "ctx context.Context, pool *pgxpool.Pool, tx pgx.Tx, db *outboxtest.DB, t *testing.T, " +
	"h *relay.Handlers, msg outbox.Message, key string, id int64, store pdf.BlobStore, " +
	"r *http.Request, mux *http.ServeMux, err error"

// bodyImports are the packages bodyParams use.
var bodyImports = []string{"context", "pgxpool", "pgx", "outboxtest", "testing", "relay", "outbox", "pdf", "http"}

// genDir is where the generated packages live, in the overlay only.
const genDir = "internal/docsnippets/gen"

// kind is what a block is.
type kind int

const (
	wholeFile kind = iota
	decls
	body
)

// unit is one generated package.
type unit struct {
	dir    string // under genDir
	name   string // package name
	file   string // the Markdown file
	group  string // the directive's package name, or ""
	blocks []*parsed
	// importedBy is set when another unit of the page imports this one.
	importedBy []string
}

// parsed is a block with what was learned from parsing it.
type parsed struct {
	Block
	kind     kind
	pkgName  string            // whole files: their package clause
	declared map[string]bool   // top-level names (decls and whole files)
	uses     map[string]bool   // X of X.Sel expressions
	imports  map[string]string // name: import path (fragments)
	genPath  string            // the generated file, in the temp directory
	offset   int               // generated line - offset = line in Code (from 1)
}

// Check compiles the ```go blocks of cfg.Files.
func Check(ctx context.Context, cfg Config) (*Result, error) {
	root, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, err
	}
	cfg.Root = root
	modPath, err := modulePath(cfg.Root)
	if err != nil {
		return nil, err
	}
	known, err := modulePackages(cfg.Root, modPath)
	if err != nil {
		return nil, err
	}
	for name, path := range stdPackages {
		if _, ok := known[name]; !ok {
			known[name] = path
		}
	}
	prelude, err := parsePrelude(cfg.Prelude)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.PreludeName, err)
	}

	res := &Result{}
	var units []*unit
	for _, file := range cfg.Files {
		src, err := os.ReadFile(filepath.Join(cfg.Root, file))
		if err != nil {
			return nil, err
		}
		blocks, err := Extract(file, src)
		if err != nil {
			return nil, err
		}
		us, problems := plan(file, blocks, modPath, known, res)
		res.Problems = append(res.Problems, problems...)
		units = append(units, us...)
	}
	if len(units) == 0 {
		return res, nil
	}

	tmp, err := os.MkdirTemp("", "docsnippets-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	overlay := map[string]string{}
	where := map[string]func(line int) (string, int, bool){} // generated file base name: position mapper
	for _, u := range units {
		if err := generate(u, tmp, cfg, prelude, known, overlay, where); err != nil {
			return nil, err
		}
	}

	// Build; drop imports that turn out unused (a local name that shadows
	// a package name) and build again.
	for round := 0; ; round++ {
		out, buildErr := build(ctx, cfg, tmp, units, overlay)
		errs := parseErrors(out, cfg.Root)
		var unusedImports []compileError
		var remaining []compileError
		for _, e := range errs {
			if strings.HasSuffix(e.msg, " imported and not used") && round < 3 {
				unusedImports = append(unusedImports, e)
				continue
			}
			remaining = append(remaining, e)
		}
		if len(unusedImports) > 0 {
			if err := dropImports(unusedImports); err != nil {
				return nil, err
			}
			continue
		}
		forgiven := map[string]bool{} // units with forgiven errors
		for _, e := range remaining {
			var file string
			var line int
			var isBody bool
			if w := where[filepath.Base(e.path)]; w != nil {
				file, line, isBody = w(e.line)
			}
			if isBody && strings.HasPrefix(e.msg, "declared and not used") {
				forgiven[filepath.Dir(e.path)] = true
				continue
			}
			if file == "" {
				file, line = cfg.PreludeName+" (or generated code: "+e.path+")", e.line
			}
			res.Problems = append(res.Problems, Problem{File: file, Line: line, Msg: e.msg})
		}
		for _, u := range units {
			if forgiven[filepath.Join(tmp, u.dir)] && len(u.importedBy) > 0 {
				res.Problems = append(res.Problems, Problem{File: u.file, Line: u.blocks[0].Line,
					Msg: fmt.Sprintf("package %s has unused variables, which are forgiven only in blocks no other block imports", u.name)})
			}
		}
		if buildErr != nil && len(errs) == 0 {
			return nil, fmt.Errorf("go build: %w\n%s", buildErr, out)
		}
		break
	}
	sort.SliceStable(res.Problems, func(i, j int) bool {
		a, b := res.Problems[i], res.Problems[j]
		if a.File != b.File {
			return a.File < b.File
		}
		return a.Line < b.Line
	})
	return res, nil
}

// plan parses a page's blocks and groups them into units.
func plan(file string, blocks []Block, modPath string, known map[string]string, res *Result) ([]*unit, []Problem) {
	var problems []Problem
	var units []*unit
	groups := map[string]*unit{}
	slug := "p" + regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(file, "_")
	for _, b := range blocks {
		if b.Skip != "" {
			res.Skipped++
			continue
		}
		res.Blocks++
		p, err := parseBlock(b)
		if err != nil {
			problems = append(problems, *err)
			continue
		}
		if b.Package != "" {
			if p.kind == wholeFile && p.pkgName != b.Package {
				problems = append(problems, Problem{File: file, Line: b.Line,
					Msg: fmt.Sprintf("package clause %s, but the directive says package %s", p.pkgName, b.Package)})
				continue
			}
			u := groups[b.Package]
			if u == nil {
				u = &unit{dir: slug + "_" + b.Package, name: b.Package, file: file, group: b.Package}
				groups[b.Package] = u
				units = append(units, u)
			}
			u.blocks = append(u.blocks, p)
			continue
		}
		name := "snippet"
		if p.kind == wholeFile {
			name = p.pkgName
		}
		units = append(units, &unit{dir: fmt.Sprintf("%s_L%d", slug, b.Line), name: name, file: file, blocks: []*parsed{p}})
	}
	// Imports: known packages, and the page's groups.
	for _, u := range units {
		declared := map[string]bool{}
		for _, p := range u.blocks {
			for n := range p.declared {
				declared[n] = true
			}
		}
		for _, p := range u.blocks {
			if p.kind == wholeFile {
				continue
			}
			p.imports = map[string]string{}
			for name := range p.uses {
				if declared[name] || name == u.name {
					continue
				}
				if g, ok := groups[name]; ok && g != u {
					p.imports[name] = modPath + "/" + genDir + "/" + g.dir
					g.importedBy = append(g.importedBy, u.dir)
					continue
				}
				if path, ok := known[name]; ok {
					p.imports[name] = path
				}
			}
			if p.kind == body {
				for _, name := range bodyImports {
					p.imports[name] = known[name]
				}
			}
		}
	}
	return units, problems
}

// parseBlock finds out what a block is.
func parseBlock(b Block) (*parsed, *Problem) {
	p := &parsed{Block: b, declared: map[string]bool{}, uses: map[string]bool{}}
	fset := token.NewFileSet()
	if _, err := parser.ParseFile(fset, "", b.Code, parser.PackageClauseOnly); err == nil {
		f, err := parser.ParseFile(fset, "", b.Code, parser.ParseComments)
		if err != nil {
			return nil, parseProblem(b, err, 0)
		}
		p.kind, p.pkgName = wholeFile, f.Name.Name
		collect(p, f)
		return p, nil
	}
	const declHeader = "package p\n"
	f, declErr := parser.ParseFile(fset, "", declHeader+b.Code, parser.ParseComments)
	if declErr == nil {
		p.kind = decls
		collect(p, f)
		return p, nil
	}
	const bodyHeader = "package p\nfunc _() {\n"
	f, bodyErr := parser.ParseFile(fset, "", bodyHeader+b.Code+"\n}\n", parser.ParseComments)
	if bodyErr == nil {
		p.kind = body
		collect(p, f)
		p.declared = map[string]bool{} // a body declares nothing at the top level
		return p, nil
	}
	pd, pb := parseProblem(b, declErr, 1), parseProblem(b, bodyErr, 2)
	return nil, &Problem{File: b.File, Line: b.Line,
		Msg: fmt.Sprintf("neither top-level declarations (line %d: %s) nor statements (line %d: %s); fix the block, or see the package documentation of internal/docsnippets",
			pd.Line, pd.Msg, pb.Line, pb.Msg)}
}

// parseProblem maps a parse error to the block's Markdown line; extra is
// the number of header lines added before the code.
func parseProblem(b Block, err error, extra int) *Problem {
	line, msg := 1+extra, err.Error()
	var list scanner.ErrorList
	if errors.As(err, &list) && len(list) > 0 {
		line, msg = list[0].Pos.Line, list[0].Msg
	}
	line -= extra
	if line < 1 {
		line = 1
	}
	return &Problem{File: b.File, Line: b.Line + line - 1, Msg: msg}
}

// collect records the top-level names a file declares and the X of its
// X.Sel expressions.
func collect(p *parsed, f *ast.File) {
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			if d.Recv == nil && d.Name.Name != "_" && d.Name.Name != "init" {
				p.declared[d.Name.Name] = true
			}
		case *ast.GenDecl:
			for _, s := range d.Specs {
				switch s := s.(type) {
				case *ast.TypeSpec:
					p.declared[s.Name.Name] = true
				case *ast.ValueSpec:
					for _, n := range s.Names {
						p.declared[n.Name] = true
					}
				}
			}
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		if sel, ok := n.(*ast.SelectorExpr); ok {
			if x, ok := sel.X.(*ast.Ident); ok {
				p.uses[x.Name] = true
			}
		}
		return true
	})
}

// preludeDecl is one stand-in: a top-level declaration of the prelude,
// with the methods of a type declared in it.
type preludeDecl struct {
	names []string
	src   string
	uses  map[string]bool
}

func parsePrelude(src []byte) ([]preludeDecl, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "prelude.go", src, parser.ParseComments)
	if err != nil {
		return nil, err
	}
	var out []preludeDecl
	byType := map[string]int{}
	text := func(n ast.Node) string {
		start := n.Pos()
		if d, ok := n.(*ast.FuncDecl); ok && d.Doc != nil {
			start = d.Doc.Pos()
		}
		if d, ok := n.(*ast.GenDecl); ok && d.Doc != nil {
			start = d.Doc.Pos()
		}
		return string(src[fset.Position(start).Offset:fset.Position(n.End()).Offset])
	}
	uses := func(n ast.Node) map[string]bool {
		p := &parsed{declared: map[string]bool{}, uses: map[string]bool{}}
		collect(p, &ast.File{Name: ast.NewIdent("p"), Decls: []ast.Decl{n.(ast.Decl)}})
		return p.uses
	}
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *ast.GenDecl:
			if d.Tok == token.IMPORT {
				continue
			}
			pd := preludeDecl{src: text(d), uses: uses(d)}
			for _, s := range d.Specs {
				switch s := s.(type) {
				case *ast.TypeSpec:
					pd.names = append(pd.names, s.Name.Name)
					byType[s.Name.Name] = len(out)
				case *ast.ValueSpec:
					for _, n := range s.Names {
						pd.names = append(pd.names, n.Name)
					}
				}
			}
			out = append(out, pd)
		case *ast.FuncDecl:
			if d.Recv != nil {
				recv := d.Recv.List[0].Type
				if st, ok := recv.(*ast.StarExpr); ok {
					recv = st.X
				}
				id, ok := recv.(*ast.Ident)
				i, found := byType[fmt.Sprint(id)]
				if !ok || !found {
					return nil, fmt.Errorf("method %s: declare its type before it", d.Name.Name)
				}
				out[i].src += "\n\n" + text(d)
				for n := range uses(d) {
					out[i].uses[n] = true
				}
				continue
			}
			out = append(out, preludeDecl{names: []string{d.Name.Name}, src: text(d), uses: uses(d)})
		}
	}
	return out, nil
}

// generate writes a unit's files into tmp and adds them to overlay.
func generate(u *unit, tmp string, cfg Config, prelude []preludeDecl, known map[string]string,
	overlay map[string]string, where map[string]func(int) (string, int, bool)) error {
	if err := os.MkdirAll(filepath.Join(tmp, u.dir), 0o755); err != nil {
		return err
	}
	declared := map[string]bool{}
	fragments := false
	for _, p := range u.blocks {
		for n := range p.declared {
			declared[n] = true
		}
		fragments = fragments || p.kind != wholeFile
	}
	add := func(name string, src []byte, mapper func(int) (string, int, bool)) error {
		path := filepath.Join(tmp, u.dir, name)
		if err := os.WriteFile(path, src, 0o644); err != nil {
			return err
		}
		overlay[filepath.Join(cfg.Root, genDir, u.dir, name)] = path
		where[name] = mapper
		return nil
	}
	for i, p := range u.blocks {
		var b strings.Builder
		switch p.kind {
		case wholeFile:
			b.WriteString(p.Code)
			p.offset = 0
		default:
			fmt.Fprintf(&b, "package %s\n\n", u.name)
			writeImports(&b, p.imports)
			if p.kind == body {
				fmt.Fprintf(&b, "func _(%s) error {\n{\n", bodyParams)
			}
			p.offset = strings.Count(b.String(), "\n")
			b.WriteString(p.Code)
			if p.kind == body {
				b.WriteString("}\nreturn nil\n}\n")
			}
		}
		name := fmt.Sprintf("%s__b%d.go", u.dir, i)
		p.genPath = filepath.Join(tmp, u.dir, name)
		codeLines := strings.Count(p.Code, "\n")
		if err := add(name, []byte(b.String()), func(line int) (string, int, bool) {
			l := line - p.offset
			if l < 1 || l > codeLines {
				return "", 0, false
			}
			return p.File, p.Line + l - 1, p.kind == body
		}); err != nil {
			return err
		}
	}
	if !fragments {
		return nil
	}
	// The stand-ins the unit does not declare itself.
	var b strings.Builder
	uses := map[string]bool{}
	var body strings.Builder
	for _, d := range prelude {
		skip := false
		for _, n := range d.names {
			skip = skip || declared[n]
		}
		if skip {
			continue
		}
		body.WriteString(d.src + "\n\n")
		for n := range d.uses {
			uses[n] = true
		}
	}
	imports := map[string]string{}
	for n := range uses {
		if path, ok := known[n]; ok && !declared[n] {
			imports[n] = path
		}
	}
	fmt.Fprintf(&b, "package %s\n\n", u.name)
	writeImports(&b, imports)
	b.WriteString(body.String())
	name := u.dir + "__prelude.go"
	return add(name, []byte(b.String()), func(int) (string, int, bool) { return "", 0, false })
}

func writeImports(b *strings.Builder, imports map[string]string) {
	var lines []string
	for name, path := range imports {
		lines = append(lines, fmt.Sprintf("\t%s %q\n", name, path))
	}
	if len(lines) == 0 {
		return
	}
	sort.Strings(lines)
	b.WriteString("import (\n" + strings.Join(lines, "") + ")\n\n")
}

// build runs go build on the units through the overlay.
func build(ctx context.Context, cfg Config, tmp string, units []*unit, overlay map[string]string) (string, error) {
	ov, err := json.Marshal(map[string]any{"Replace": overlay})
	if err != nil {
		return "", err
	}
	ovPath := filepath.Join(tmp, "overlay.json")
	if err := os.WriteFile(ovPath, ov, 0o644); err != nil {
		return "", err
	}
	args := []string{"build", "-overlay=" + ovPath, "-gcflags=-e"}
	for _, u := range units {
		args = append(args, "./"+genDir+"/"+u.dir)
	}
	goCmd := cfg.Go
	if goCmd == "" {
		goCmd = "go"
	}
	cmd := exec.CommandContext(ctx, goCmd, args...)
	cmd.Dir = cfg.Root
	out, err := cmd.CombinedOutput()
	return string(out), err
}

type compileError struct {
	path      string
	line, col int
	msg       string
}

var errLineRE = regexp.MustCompile(`^(.+\.go):(\d+):(\d+): (.*)$`)

// parseErrors reads go build's errors. Paths in its output are relative to
// the build's directory, dir, when that is shorter than the absolute path
// (a checkout next to the temp directory); they are made absolute here.
func parseErrors(out, dir string) []compileError {
	var errs []compileError
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		m := errLineRE.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		line, _ := strconv.Atoi(m[2])
		col, _ := strconv.Atoi(m[3])
		path := m[1]
		if !filepath.IsAbs(path) {
			path = filepath.Join(dir, path)
		}
		errs = append(errs, compileError{path: path, line: line, col: col, msg: m[4]})
	}
	return errs
}

// dropImports removes the imports that the errors say are unused.
func dropImports(errs []compileError) error {
	byFile := map[string]map[int]bool{}
	for _, e := range errs {
		if byFile[e.path] == nil {
			byFile[e.path] = map[int]bool{}
		}
		byFile[e.path][e.line] = true
	}
	for path, lines := range byFile {
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		ls := bytes.Split(src, []byte("\n"))
		for l := range lines {
			if l >= 1 && l <= len(ls) {
				ls[l-1] = nil // keep the line, so positions stay
			}
		}
		if err := os.WriteFile(path, bytes.Join(ls, []byte("\n")), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// modulePath reads the module path from root/go.mod.
func modulePath(root string) (string, error) {
	src, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return "", err
	}
	m := regexp.MustCompile(`(?m)^module\s+(\S+)`).FindSubmatch(src)
	if m == nil {
		return "", errors.New("go.mod: no module line")
	}
	return string(m[1]), nil
}

// modulePackages maps the package names of the module's packages (except
// main packages and this one's generated ones) to their import paths.
// Where two packages share a name, neither is listed.
func modulePackages(root, modPath string) (map[string]string, error) {
	found := map[string]string{}
	ambiguous := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (name == "testdata" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		dir := filepath.Dir(path)
		rel, err := filepath.Rel(root, dir)
		if err != nil {
			return err
		}
		importPath := modPath
		if rel != "." {
			importPath += "/" + filepath.ToSlash(rel)
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.PackageClauseOnly)
		if err != nil {
			return nil // not ours to judge here
		}
		name := f.Name.Name
		if name == "main" || name == "documentation" {
			return nil
		}
		if prev, ok := found[name]; ok && prev != importPath {
			ambiguous[name] = true
		}
		found[name] = importPath
		return nil
	})
	for n := range ambiguous {
		delete(found, n)
	}
	return found, err
}
