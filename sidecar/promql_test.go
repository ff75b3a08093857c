package sidecar_test

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// This file holds the small readers deploy_test.go needs: a PromQL
// scanner that finds the metric names (and the label names of their
// matchers) an expression selects, a reader of the Prometheus text format,
// and a reader of the `expr:` values of an alerting rules file. They are
// not parsers of those languages; they read what deploy/ holds, and fail
// on anything they do not understand rather than guess.

// selectorRef is one vector selector of an expression: a metric name and
// the label names its matchers use.
type selectorRef struct {
	Metric string
	Labels []string
}

// promqlKeywords are the words of PromQL that are neither metrics nor
// function calls: aggregation operators, modifiers, set operators, and the
// number literals.
var promqlKeywords = map[string]bool{
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"and": true, "or": true, "unless": true, "atan2": true, "bool": true, "offset": true,
	"inf": true, "nan": true, "Inf": true, "NaN": true,
}

// labelListKeywords are followed by a parenthesised list of label names.
var labelListKeywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

// promqlFunctions are PromQL's functions (Prometheus 2.x): a name followed
// by "(" that is not among them is an error, so that a misspelt function is
// not taken for something else.
var promqlFunctions = map[string]bool{
	"abs": true, "absent": true, "absent_over_time": true, "ceil": true, "changes": true, "clamp": true,
	"clamp_max": true, "clamp_min": true, "day_of_month": true, "day_of_week": true, "day_of_year": true,
	"days_in_month": true, "delta": true, "deriv": true, "exp": true, "floor": true,
	"histogram_quantile": true, "histogram_count": true, "histogram_sum": true, "histogram_fraction": true,
	"holt_winters": true, "hour": true, "idelta": true, "increase": true, "irate": true, "label_join": true,
	"label_replace": true, "ln": true, "log2": true, "log10": true, "minute": true, "month": true,
	"predict_linear": true, "rate": true, "resets": true, "round": true, "scalar": true, "sgn": true,
	"sort": true, "sort_desc": true, "sqrt": true, "time": true, "timestamp": true, "vector": true,
	"year": true, "avg_over_time": true, "min_over_time": true, "max_over_time": true,
	"sum_over_time": true, "count_over_time": true, "quantile_over_time": true, "stddev_over_time": true,
	"stdvar_over_time": true, "last_over_time": true, "present_over_time": true,
}

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdentChar(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// promqlSelectors returns the vector selectors of expr, in order. Grafana
// variables ($job, ${datasource}, $__rate_interval) are skipped, as are
// strings, range and subquery brackets, numbers and durations.
func promqlSelectors(expr string) ([]selectorRef, error) {
	var refs []selectorRef
	i := 0
	skipSpace := func() {
		for i < len(expr) && isSpace(expr[i]) {
			i++
		}
	}
	for i < len(expr) {
		c := expr[i]
		switch {
		case isSpace(c):
			i++
		case c == '"' || c == '\'' || c == '`':
			end, err := skipString(expr, i)
			if err != nil {
				return nil, err
			}
			i = end
		case c == '[':
			end := strings.IndexByte(expr[i:], ']')
			if end < 0 {
				return nil, fmt.Errorf("unclosed [ at offset %d", i)
			}
			i += end + 1
		case c == '{':
			return nil, fmt.Errorf("a selector without a metric name at offset %d", i)
		case c == '$':
			i++
			if i < len(expr) && expr[i] == '{' {
				end := strings.IndexByte(expr[i:], '}')
				if end < 0 {
					return nil, fmt.Errorf("unclosed ${ at offset %d", i)
				}
				i += end + 1
				continue
			}
			for i < len(expr) && isIdentChar(expr[i]) {
				i++
			}
		case c >= '0' && c <= '9' || c == '.':
			// Numbers (1e3, 0.99) and durations (5m, 1h30m).
			for i < len(expr) && (isIdentChar(expr[i]) || expr[i] == '.') {
				i++
			}
		case isIdentStart(c):
			start := i
			for i < len(expr) && isIdentChar(expr[i]) {
				i++
			}
			word := expr[start:i]
			skipSpace()
			next := byte(0)
			if i < len(expr) {
				next = expr[i]
			}
			switch {
			case labelListKeywords[word]:
				if next == '(' {
					end := strings.IndexByte(expr[i:], ')')
					if end < 0 {
						return nil, fmt.Errorf("unclosed label list after %q", word)
					}
					i += end + 1
				}
			case promqlKeywords[word]:
			case next == '(':
				if !promqlFunctions[word] {
					return nil, fmt.Errorf("%q is not a PromQL function", word)
				}
			default:
				ref := selectorRef{Metric: word}
				if next == '{' {
					labels, end, err := matcherLabels(expr, i)
					if err != nil {
						return nil, fmt.Errorf("selector of %s: %w", word, err)
					}
					ref.Labels, i = labels, end
				}
				refs = append(refs, ref)
			}
		default:
			// Operators, parentheses, commas.
			i++
		}
	}
	return refs, nil
}

// skipString returns the offset just past the string literal at expr[i].
func skipString(expr string, i int) (int, error) {
	quote := expr[i]
	for j := i + 1; j < len(expr); j++ {
		switch {
		case expr[j] == '\\' && quote != '`':
			j++
		case expr[j] == quote:
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("unclosed string at offset %d", i)
}

// matcherLabels reads the matchers {a="x", b=~"y"} at expr[i] and returns
// their label names and the offset past the closing brace.
func matcherLabels(expr string, i int) ([]string, int, error) {
	var labels []string
	i++ // {
	for {
		for i < len(expr) && (isSpace(expr[i]) || expr[i] == ',') {
			i++
		}
		if i >= len(expr) {
			return nil, 0, fmt.Errorf("unclosed {")
		}
		if expr[i] == '}' {
			return labels, i + 1, nil
		}
		start := i
		for i < len(expr) && isIdentChar(expr[i]) {
			i++
		}
		if start == i {
			return nil, 0, fmt.Errorf("expected a label name at offset %d", i)
		}
		labels = append(labels, expr[start:i])
		for i < len(expr) && (isSpace(expr[i]) || strings.IndexByte("=!~", expr[i]) >= 0) {
			i++
		}
		if i >= len(expr) || (expr[i] != '"' && expr[i] != '\'' && expr[i] != '`') {
			return nil, 0, fmt.Errorf("expected a quoted value for label %s", expr[start:i])
		}
		end, err := skipString(expr, i)
		if err != nil {
			return nil, 0, err
		}
		i = end
	}
}

// exposition maps the series names of a Prometheus text-format scrape to
// the label names seen on them.
type exposition map[string]map[string]bool

// parseExposition reads the text format: "name{l="v",...} value [ts]"
// lines; comments and blank lines are skipped.
func parseExposition(body string) (exposition, error) {
	out := exposition{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		end := strings.IndexAny(line, "{ ")
		if end <= 0 {
			return nil, fmt.Errorf("not a sample line: %q", line)
		}
		name := line[:end]
		if out[name] == nil {
			out[name] = map[string]bool{}
		}
		if line[end] == '{' {
			labels, _, err := matcherLabels(line, end)
			if err != nil {
				return nil, fmt.Errorf("%q: %w", line, err)
			}
			for _, l := range labels {
				out[name][l] = true
			}
		}
	}
	return out, sc.Err()
}

// ruleExprRE matches an `expr:` key of a rules file, with its indentation
// and value.
var ruleExprRE = regexp.MustCompile(`^(\s*)(?:- )?expr:\s*(.*)$`)

// ruleExprs returns the `expr:` values of the rules file at path, keyed by
// the line they start on: single-line plain values and literal blocks
// (`expr: |`). Other YAML forms of an expr (quoted, folded) are an error.
func ruleExprs(path string) (map[int]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(string(data), "\n")
	out := map[int]string{}
	for n := 0; n < len(lines); n++ {
		m := ruleExprRE.FindStringSubmatch(lines[n])
		if m == nil {
			continue
		}
		indent, value := len(m[1]), strings.TrimSpace(m[2])
		switch {
		case value == "|" || value == "|-":
			var block []string
			for n+1 < len(lines) {
				next := lines[n+1]
				if strings.TrimSpace(next) != "" && len(next)-len(strings.TrimLeft(next, " ")) <= indent {
					break
				}
				block = append(block, strings.TrimSpace(next))
				n++
			}
			out[n+1-len(block)] = strings.TrimSpace(strings.Join(block, "\n"))
		case value == "" || strings.ContainsAny(value[:1], `"'>&*!{[`):
			return nil, fmt.Errorf("%s:%d: expr in a form this reader does not take (write it plain on one line, or as a | block): %s", path, n+1, value)
		default:
			out[n+1] = value
		}
	}
	return out, nil
}

func TestPromqlSelectors(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		expr string
		want []string // "metric label label"
	}{
		{`max by (topic, queue) (txoutbox_oldest_due_seconds) > 300`, []string{"txoutbox_oldest_due_seconds"}},
		{`up{job="txoutbox"} == 0 or txoutbox_database_up == 0`, []string{"up job", "txoutbox_database_up"}},
		{"sum by (topic) (rate(a_total{outcome=~\"retry|dead\", job=~\"$job\"}[$__rate_interval]))\n / sum by (topic) (rate(a_total[10m])) > 0.2",
			[]string{"a_total outcome job", "a_total"}},
		{`histogram_quantile(0.99, sum by (le) (rate(h_bucket{x='a}b'}[5m] offset 1h)))`, []string{"h_bucket x"}},
		{`absent(up{job="txoutbox"} == 1)`, []string{"up job"}},
		{`count(up{job=~"${job}"} == 1) * 1e3`, []string{"up job"}},
	} {
		refs, err := promqlSelectors(c.expr)
		if err != nil {
			t.Errorf("%s: %v", c.expr, err)
			continue
		}
		var got []string
		for _, r := range refs {
			got = append(got, strings.TrimSpace(r.Metric+" "+strings.Join(r.Labels, " ")))
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s:\n got %q\nwant %q", c.expr, got, c.want)
		}
	}
	for _, bad := range []string{`rat(x[5m])`, `{__name__="x"}`, `x{a="b"`, `sum(x) by (a`} {
		if refs, err := promqlSelectors(bad); err == nil {
			t.Errorf("%s: no error (refs %v)", bad, refs)
		}
	}
}
