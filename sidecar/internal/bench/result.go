package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Metric is one named figure of a Result.
type Metric struct {
	// Name is the JSON key, such as "per_sec".
	Name string
	// Value is the figure.
	Value float64
	// Digits is how many decimals are printed; 0 prints an integer.
	Digits int
	// Setting marks a configuration value (entries, workers...) rather
	// than a measurement: summaries copy it instead of taking the median.
	Setting bool
}

// Result is one run of one scenario, or of one phase of a scenario that
// has phases (pressure).
type Result struct {
	// Scenario is the scenario's name.
	Scenario string
	// Phase names the phase, such as "pinned"; empty for a scenario
	// without phases.
	Phase string
	// Metrics are the settings and measurements, in print order.
	Metrics []Metric
}

// Get returns the metric called name and whether there is one.
func (r Result) Get(name string) (float64, bool) {
	for _, m := range r.Metrics {
		if m.Name == name {
			return m.Value, true
		}
	}
	return 0, false
}

func (r *Result) setting(name string, v float64, digits int) {
	r.Metrics = append(r.Metrics, Metric{Name: name, Value: v, Digits: digits, Setting: true})
}

func (r *Result) measure(name string, v float64, digits int) {
	r.Metrics = append(r.Metrics, Metric{Name: name, Value: v, Digits: digits})
}

// Summary is the median, min and max of each measurement over the runs of
// one scenario, or of one phase of it.
type Summary struct {
	Scenario string
	Phase    string
	Runs     int
	Metrics  []SummaryMetric
}

// SummaryMetric is one metric of a Summary. For a setting, Median, Min and
// Max are the first run's value.
type SummaryMetric struct {
	Metric
	Median, Min, Max float64
}

// Summarize summarises runs of one scenario (of one phase: see Groups).
// The metrics are those of the first run; a metric missing from a later
// run is summarised over the runs that have it.
func Summarize(runs []Result) Summary {
	if len(runs) == 0 {
		return Summary{}
	}
	s := Summary{Scenario: runs[0].Scenario, Phase: runs[0].Phase, Runs: len(runs)}
	for _, m := range runs[0].Metrics {
		sm := SummaryMetric{Metric: m, Median: m.Value, Min: m.Value, Max: m.Value}
		if !m.Setting {
			var vs []float64
			for _, r := range runs {
				if v, ok := r.Get(m.Name); ok {
					vs = append(vs, v)
				}
			}
			sm.Median, sm.Min, sm.Max = median(vs), slices.Min(vs), slices.Max(vs)
			sm.Value = sm.Median
		}
		s.Metrics = append(s.Metrics, sm)
	}
	return s
}

// Groups splits results by scenario and phase, each group in the order
// of its first result: the runs of a phased scenario become one group per
// phase, to summarise separately.
func Groups(results []Result) [][]Result {
	var groups [][]Result
	index := map[[2]string]int{}
	for _, r := range results {
		k := [2]string{r.Scenario, r.Phase}
		i, ok := index[k]
		if !ok {
			i = len(groups)
			index[k] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], r)
	}
	return groups
}

func median(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// formatNumber prints v with digits decimals, as JSON allows: NaN and
// infinities, which no scenario should produce, become null.
func formatNumber(v float64, digits int) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "null"
	}
	s := strconv.FormatFloat(v, 'f', digits, 64)
	if strings.HasPrefix(s, "-") && strings.Trim(s, "-0.") == "" {
		s = s[1:] // -0.000 is 0.000
	}
	return s
}

// jsonLine builds one JSON object with keys in insertion order.
type jsonLine struct{ b bytes.Buffer }

func (l *jsonLine) raw(key, value string) {
	if l.b.Len() == 0 {
		l.b.WriteByte('{')
	} else {
		l.b.WriteByte(',')
	}
	k, _ := json.Marshal(key)
	l.b.Write(k)
	l.b.WriteByte(':')
	l.b.WriteString(value)
}

func (l *jsonLine) string(key, value string) {
	v, _ := json.Marshal(value)
	l.raw(key, string(v))
}

func (l *jsonLine) writeTo(w io.Writer) error {
	l.b.WriteString("}\n")
	_, err := w.Write(l.b.Bytes())
	return err
}

// WriteJSON writes r as one JSON object on its own line:
// {"scenario":"drain","entries":100000,...}. A phase follows the scenario
// ({"scenario":"pressure","phase":"pinned",...}); a run above 0 adds
// "run":run after them.
func WriteJSON(w io.Writer, r Result, run int) error {
	var l jsonLine
	l.string("scenario", r.Scenario)
	if r.Phase != "" {
		l.string("phase", r.Phase)
	}
	if run > 0 {
		l.raw("run", strconv.Itoa(run))
	}
	for _, m := range r.Metrics {
		l.raw(m.Name, formatNumber(m.Value, m.Digits))
	}
	return l.writeTo(w)
}

// WriteSummaryJSON writes s as one JSON object on its own line:
// "summary":true, the number of runs, every setting, and for every
// measurement its median under its own name plus name_min and name_max.
func WriteSummaryJSON(w io.Writer, s Summary) error {
	var l jsonLine
	l.string("scenario", s.Scenario)
	if s.Phase != "" {
		l.string("phase", s.Phase)
	}
	l.raw("summary", "true")
	l.raw("runs", strconv.Itoa(s.Runs))
	for _, m := range s.Metrics {
		l.raw(m.Name, formatNumber(m.Median, m.Digits))
		if !m.Setting {
			l.raw(m.Name+"_min", formatNumber(m.Min, m.Digits))
			l.raw(m.Name+"_max", formatNumber(m.Max, m.Digits))
		}
	}
	return l.writeTo(w)
}

// WriteTable writes the runs of one scenario for a person: a title line
// with the scenario and its settings, then one row per measurement with a
// column per run and, for more than one run, median, min and max. For a
// scenario with phases it writes a column per phase instead, each the
// median over the runs.
func WriteTable(w io.Writer, runs []Result) error {
	if len(runs) == 0 {
		return nil
	}
	if runs[0].Phase != "" {
		return writePhaseTable(w, Groups(runs))
	}
	if err := writeTitle(w, runs[0], ""); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	header := []string{"METRIC"}
	if len(runs) == 1 {
		header = append(header, "VALUE")
	} else {
		for i := range runs {
			header = append(header, fmt.Sprintf("RUN %d", i+1))
		}
		header = append(header, "MEDIAN", "MIN", "MAX")
	}
	s := Summarize(runs)
	width := len(header[0])
	for _, m := range s.Metrics {
		if !m.Setting {
			width = max(width, len(m.Name))
		}
	}
	pad := func(name string) string { return name + strings.Repeat(" ", width-len(name)) }
	header[0] = pad(header[0])
	fmt.Fprintf(tw, "  %s\t\n", strings.Join(header, "\t"))
	for _, m := range s.Metrics {
		if m.Setting {
			continue
		}
		row := []string{pad(m.Name)}
		for _, r := range runs {
			v, ok := r.Get(m.Name)
			if ok {
				row = append(row, formatNumber(v, m.Digits))
			} else {
				row = append(row, "-")
			}
		}
		if len(runs) > 1 {
			row = append(row, formatNumber(m.Median, m.Digits), formatNumber(m.Min, m.Digits), formatNumber(m.Max, m.Digits))
		}
		fmt.Fprintf(tw, "  %s\t\n", strings.Join(row, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w)
	return err
}

// writeTitle writes the scenario's name, the settings of r and note.
func writeTitle(w io.Writer, r Result, note string) error {
	var title strings.Builder
	title.WriteString(r.Scenario)
	for _, m := range r.Metrics {
		if m.Setting {
			fmt.Fprintf(&title, "  %s=%s", m.Name, formatNumber(m.Value, m.Digits))
		}
	}
	title.WriteString(note)
	_, err := fmt.Fprintln(w, title.String())
	return err
}

// writePhaseTable writes the groups of one phased scenario (Groups): the
// settings of the first phase's first run in the title, then a row per
// measurement with a column per phase, each the median over its runs.
func writePhaseTable(w io.Writer, phases [][]Result) error {
	note := ""
	if n := len(phases[0]); n > 1 {
		note = fmt.Sprintf("  (medians of %d runs)", n)
	}
	if err := writeTitle(w, phases[0][0], note); err != nil {
		return err
	}
	sums := make([]Summary, len(phases))
	header := []string{"METRIC"}
	for i, g := range phases {
		sums[i] = Summarize(g)
		header = append(header, strings.ToUpper(sums[i].Phase))
	}
	width := len(header[0])
	for _, m := range sums[0].Metrics {
		if !m.Setting {
			width = max(width, len(m.Name))
		}
	}
	pad := func(name string) string { return name + strings.Repeat(" ", width-len(name)) }
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	header[0] = pad(header[0])
	fmt.Fprintf(tw, "  %s\t\n", strings.Join(header, "\t"))
	for _, m := range sums[0].Metrics {
		if m.Setting {
			continue
		}
		row := []string{pad(m.Name)}
		for _, s := range sums {
			cell := "-"
			for _, sm := range s.Metrics {
				if sm.Name == m.Name {
					cell = formatNumber(sm.Median, sm.Digits)
				}
			}
			row = append(row, cell)
		}
		fmt.Fprintf(tw, "  %s\t\n", strings.Join(row, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w)
	return err
}
