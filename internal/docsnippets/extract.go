package docsnippets

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"strings"
)

// Block is one ```go block of a Markdown file.
type Block struct {
	File string // as given to Extract
	Line int    // line of the block's first line of code, from 1
	Code string // the code, without the fence and the fence's indentation
	// Package is NAME of a "snippet: package NAME" directive, or "".
	Package string
	// Skip is the reason of a "snippet: skip REASON" directive, or "".
	Skip string
}

var (
	fenceRE     = regexp.MustCompile("^( *)(`{3,}|~{3,})[ \t]*([^ \t`]*)")
	directiveRE = regexp.MustCompile(`^\s*<!--\s*snippet:\s*(.*?)\s*-->\s*$`)
	identRE     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// Extract returns the ```go blocks of the Markdown document src, with the
// directives that precede them. It fails on an unknown or malformed
// directive, and on a fence that is never closed.
func Extract(file string, src []byte) ([]Block, error) {
	var (
		blocks    []Block
		lastText  string // the last non-blank line outside a code block
		inFence   bool
		fence     string // the opening fence's backticks or tildes
		indent    int
		isGo      bool
		cur       Block
		openLine  int
		sc        = bufio.NewScanner(bytes.NewReader(src))
		lineNo    = 0
		codeLines []string
	)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lineNo++
		line := sc.Text()
		if !inFence {
			m := fenceRE.FindStringSubmatch(line)
			if m == nil {
				if strings.TrimSpace(line) != "" {
					lastText = line
				}
				continue
			}
			inFence, fence, indent, openLine = true, m[2], len(m[1]), lineNo
			isGo = m[3] == "go"
			codeLines = nil
			cur = Block{File: file, Line: lineNo + 1}
			if isGo {
				if d := directiveRE.FindStringSubmatch(lastText); d != nil {
					if err := cur.setDirective(d[1]); err != nil {
						return nil, fmt.Errorf("%s:%d: %w", file, lineNo-1, err)
					}
				}
			}
			lastText = ""
			continue
		}
		trimmed := strings.TrimLeft(line, " ")
		if strings.HasPrefix(trimmed, fence) && strings.Trim(trimmed, fence[:1]+" \t") == "" {
			inFence = false
			if isGo {
				cur.Code = strings.Join(codeLines, "\n") + "\n"
				blocks = append(blocks, cur)
			}
			continue
		}
		// Remove the fence's indentation (blocks inside list items).
		for i := 0; i < indent && strings.HasPrefix(line, " "); i++ {
			line = line[1:]
		}
		codeLines = append(codeLines, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if inFence {
		return nil, fmt.Errorf("%s:%d: code block never closed", file, openLine)
	}
	return blocks, nil
}

// setDirective applies the text of a snippet directive.
func (b *Block) setDirective(d string) error {
	verb, arg, _ := strings.Cut(d, " ")
	arg = strings.TrimSpace(arg)
	switch verb {
	case "package":
		if !identRE.MatchString(arg) || arg == "main" {
			return fmt.Errorf("snippet directive: want \"package NAME\" with NAME a Go identifier other than main, got %q", d)
		}
		b.Package = arg
	case "skip":
		if arg == "" {
			return fmt.Errorf("snippet directive: \"skip\" needs a reason")
		}
		b.Skip = arg
	default:
		return fmt.Errorf("snippet directive: unknown %q (want \"package NAME\" or \"skip REASON\")", d)
	}
	return nil
}
