package docsnippets_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/internal/docsnippets"
)

// root is the module's root directory.
const root = "../.."

// TestDocSnippets compiles every ```go block of README.md and docs/*.md.
func TestDocSnippets(t *testing.T) {
	files := []string{"README.md"}
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range docs {
		rel, _ := filepath.Rel(root, d)
		files = append(files, rel)
	}
	res := check(t, files)
	t.Logf("%d files, %d blocks compiled, %d skipped", len(files), res.Blocks, res.Skipped)
	for _, p := range res.Problems {
		t.Errorf("%s", p)
	}
	if len(res.Problems) > 0 {
		t.Log("the conventions for Go blocks in the docs are in internal/docsnippets/doc.go")
	}
}

func check(t *testing.T, files []string) *docsnippets.Result {
	t.Helper()
	prelude, err := os.ReadFile("testdata/prelude.go")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := docsnippets.Check(ctx, docsnippets.Config{
		Root:        root,
		Files:       files,
		Prelude:     prelude,
		PreludeName: "internal/docsnippets/testdata/prelude.go",
	})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// The checker finds errors, at the right Markdown line, in each kind of
// block, and forgives only what it documents.
func TestCheckerReportsErrors(t *testing.T) {
	check := func(t *testing.T, md string) *docsnippets.Result {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "page.md"), []byte(md), 0o644); err != nil {
			t.Fatal(err)
		}
		prelude, err := os.ReadFile("testdata/prelude.go")
		if err != nil {
			t.Fatal(err)
		}
		abs, err := filepath.Abs(root)
		if err != nil {
			t.Fatal(err)
		}
		rel, err := filepath.Rel(abs, filepath.Join(dir, "page.md"))
		if err != nil {
			t.Fatal(err)
		}
		res, err := docsnippets.Check(context.Background(), docsnippets.Config{
			Root: abs, Files: []string{rel}, Prelude: prelude, PreludeName: "prelude",
		})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	md := strings.Join([]string{
		"# A page",                             // 1
		"",                                     // 2
		"```go",                                // 3
		"x, err := f()",                        // 4: undefined: f
		"```",                                  // 5
		"",                                     // 6
		"```go",                                // 7
		"func g() int {",                       // 8
		"\treturn \"s\"",                       // 9: wrong type
		"}",                                    // 10
		"```",                                  // 11
		"",                                     // 12
		"```go",                                // 13
		"n := 1",                               // 14: unused, forgiven in a body
		"_ = time.Second",                      // 15: time imported for it
		"return outbox.ErrInvalid",             // 16
		"```",                                  // 17
		"",                                     // 18
		"<!-- snippet: skip not Go at all -->", // 19
		"```go",                                // 20
		"this is not Go",                       // 21
		"```",                                  // 22
		"",                                     // 23
		"```go",                                // 24
		"Field: 1,",                            // 25: a fragment of a literal
		"```",                                  // 26
		"",                                     // 27
		"```go",                                // 28
		"package main",                         // 29
		"",                                     // 30
		"func main() { y := 1 }",               // 31: unused, not forgiven in a file
		"```",                                  // 32
		"",                                     // 33
		"```go",                                // 34: a local name shadows a package name
		"email := struct{ To string }{\"ada@example.com\"}",
		"fmt.Println(email.To)",
		"```",
	}, "\n") + "\n"
	res := check(t, md)
	if res.Blocks != 6 || res.Skipped != 1 {
		t.Errorf("blocks %d, skipped %d; want 6 and 1", res.Blocks, res.Skipped)
	}
	want := map[int]string{4: "undefined: f", 9: "cannot use", 25: "neither top-level declarations", 31: "declared and not used: y"}
	for _, p := range res.Problems {
		w, ok := want[p.Line]
		if !ok || !strings.Contains(p.Msg, w) || !strings.HasSuffix(p.File, "page.md") {
			t.Errorf("unexpected problem %s", p)
			continue
		}
		delete(want, p.Line)
	}
	for line, w := range want {
		t.Errorf("no problem at line %d (%q)", line, w)
	}
}
