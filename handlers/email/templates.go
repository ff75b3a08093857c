package email

import (
	"bytes"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io/fs"
	"sort"
	"strings"
	texttemplate "text/template"
)

// MaxRenderedBytes bounds each rendered part of a message (subject, text
// body, HTML body). A template that renders more fails the message
// permanently.
const MaxRenderedBytes = 8 << 20

// The file name suffixes of Config.TemplateFS.
const (
	subjectSuffix = ".subject.tmpl"
	textSuffix    = ".txt.tmpl"
	htmlSuffix    = ".html.tmpl"
)

// compiled is one parsed Template.
type compiled struct {
	subject *texttemplate.Template
	text    *texttemplate.Template // nil without a text body
	html    *htmltemplate.Template // nil without an HTML body
}

// Rendered is a message as a template renders it, before it is sent.
type Rendered struct {
	Subject string
	Text    string // empty when the template has no text body
	HTML    string // empty when the template has no HTML body
}

// loadTemplateFS reads the templates of Config.TemplateFS.
func loadTemplateFS(fsys fs.FS) (map[string]Template, error) {
	out := map[string]Template{}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(p, ".tmpl") {
			return nil
		}
		var name, part string
		for _, s := range []string{subjectSuffix, textSuffix, htmlSuffix} {
			if n, ok := strings.CutSuffix(p, s); ok && n != "" && !strings.HasSuffix(n, "/") {
				name, part = n, s
				break
			}
		}
		if name == "" {
			return fmt.Errorf("file %s: a template file is NAME%s, NAME%s or NAME%s", p, subjectSuffix, textSuffix, htmlSuffix)
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		t := out[name]
		switch part {
		case subjectSuffix:
			t.Subject = string(b)
		case textSuffix:
			t.Text = string(b)
		case htmlSuffix:
			t.HTML = string(b)
		}
		out[name] = t
		return nil
	})
	return out, err
}

// compileTemplates parses every template, reporting each problem as a
// *ConfigError.
func compileTemplates(cfg Config) (map[string]*compiled, []error) {
	var errs []error
	all := make(map[string]Template, len(cfg.Templates))
	for name, t := range cfg.Templates {
		all[name] = t
	}
	if cfg.TemplateFS != nil {
		fromFS, err := loadTemplateFS(cfg.TemplateFS)
		if err != nil {
			errs = append(errs, &ConfigError{Field: "TemplateFS", Reason: "cannot load templates", Err: err})
		}
		for name, t := range fromFS {
			if _, dup := all[name]; dup {
				errs = append(errs, &ConfigError{Field: "TemplateFS", Reason: fmt.Sprintf("template %q is also in Templates", name)})
				continue
			}
			all[name] = t
		}
	}
	if len(all) == 0 && len(errs) == 0 {
		errs = append(errs, &ConfigError{Field: "Templates", Reason: "no templates; give Templates or TemplateFS"})
	}
	out := make(map[string]*compiled, len(all))
	for _, name := range sortedKeys(all) {
		c, err := compileOne(name, all[name], cfg.Funcs)
		if err != nil {
			errs = append(errs, err...)
			continue
		}
		out[name] = c
	}
	return out, errs
}

func compileOne(name string, t Template, funcs map[string]any) (*compiled, []error) {
	field := func(part string) string { return fmt.Sprintf("Templates[%q].%s", name, part) }
	var errs []error
	if name == "" {
		errs = append(errs, &ConfigError{Field: "Templates", Reason: "a template has an empty name"})
	}
	if strings.TrimSpace(t.Subject) == "" {
		errs = append(errs, &ConfigError{Field: field("Subject"), Reason: "empty; every template needs a subject"})
	}
	hasText, hasHTML := strings.TrimSpace(t.Text) != "", strings.TrimSpace(t.HTML) != ""
	if !hasText && !hasHTML {
		errs = append(errs, &ConfigError{Field: field("Text"), Reason: "neither a text nor an HTML body; give at least one"})
	}
	if len(errs) > 0 {
		return nil, errs
	}
	c := &compiled{}
	var err error
	if c.subject, err = parseText(name+" subject", t.Subject, funcs); err != nil {
		errs = append(errs, &ConfigError{Field: field("Subject"), Reason: "does not parse", Err: err})
	}
	if hasText {
		if c.text, err = parseText(name+" text", t.Text, funcs); err != nil {
			errs = append(errs, &ConfigError{Field: field("Text"), Reason: "does not parse", Err: err})
		}
	}
	if hasHTML {
		if c.html, err = parseHTML(name+" html", t.HTML, funcs); err != nil {
			errs = append(errs, &ConfigError{Field: field("HTML"), Reason: "does not parse", Err: err})
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return c, nil
}

// parseText parses a text/template. Funcs panics on a value that is not a
// suitable function; that is reported as an error.
func parseText(name, src string, funcs map[string]any) (t *texttemplate.Template, err error) {
	defer func() {
		if r := recover(); r != nil {
			t, err = nil, fmt.Errorf("a value in Funcs: %v", r)
		}
	}()
	return texttemplate.New(name).Option("missingkey=error").Funcs(funcs).Parse(src)
}

// parseHTML is parseText for html/template.
func parseHTML(name, src string, funcs map[string]any) (t *htmltemplate.Template, err error) {
	defer func() {
		if r := recover(); r != nil {
			t, err = nil, fmt.Errorf("a value in Funcs: %v", r)
		}
	}()
	return htmltemplate.New(name).Option("missingkey=error").Funcs(funcs).Parse(src)
}

// errTooLarge is the error of a part over MaxRenderedBytes.
var errTooLarge = fmt.Errorf("renders more than %d bytes", MaxRenderedBytes)

// limitedBuffer is a bytes.Buffer that refuses to grow past
// MaxRenderedBytes.
type limitedBuffer struct{ bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > MaxRenderedBytes {
		return 0, errTooLarge
	}
	return b.Buffer.Write(p)
}

// render executes c for data.
func (c *compiled) render(name string, data map[string]any) (*Rendered, error) {
	var r Rendered
	var buf limitedBuffer
	if err := c.subject.Execute(&buf, data); err != nil {
		return nil, &TemplateError{Template: name, Part: "subject", Err: err}
	}
	r.Subject = strings.TrimSpace(buf.String())
	if strings.ContainsAny(r.Subject, "\r\n") {
		return nil, &TemplateError{Template: name, Part: "subject", Err: errors.New("renders a line break; a subject is one line")}
	}
	if c.text != nil {
		buf.Reset()
		if err := c.text.Execute(&buf, data); err != nil {
			return nil, &TemplateError{Template: name, Part: "text", Err: err}
		}
		r.Text = buf.String()
	}
	if c.html != nil {
		buf.Reset()
		if err := c.html.Execute(&buf, data); err != nil {
			return nil, &TemplateError{Template: name, Part: "html", Err: err}
		}
		r.HTML = buf.String()
	}
	return &r, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
