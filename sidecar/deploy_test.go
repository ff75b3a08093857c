package sidecar_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/sidecar"
)

// The files of deploy/ that operators load as they are: the Prometheus
// alerting rules and the Grafana dashboard.
var (
	alertsFile    = filepath.Join("..", "deploy", "prometheus", "alerts.yml")
	alertsTest    = filepath.Join("..", "deploy", "prometheus", "alerts_test.yml")
	dashboardFile = filepath.Join("..", "deploy", "grafana", "txoutbox.json")
)

// targetLabels are the series Prometheus makes itself for every target,
// and the labels it adds to every scraped series.
var (
	targetSeries = map[string]bool{"up": true}
	targetLabels = []string{"job", "instance"}
)

// dashboard is the part of a Grafana dashboard model the checks read.
type dashboard struct {
	Title         string           `json:"title"`
	UID           string           `json:"uid"`
	SchemaVersion int              `json:"schemaVersion"`
	Panels        []dashboardPanel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

type dashboardPanel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos *struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []dashboardPanel `json:"panels"` // a collapsed row's
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// allPanels flattens rows.
func allPanels(ps []dashboardPanel) []dashboardPanel {
	var out []dashboardPanel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

// grafanaVarRE matches a variable reference: $name or ${name} (with an
// optional :format).
var grafanaVarRE = regexp.MustCompile(`\$(?:\{([A-Za-z0-9_]+)(?::[a-z]+)?\}|([A-Za-z0-9_]+))`)

// grafanaBuiltins are Grafana's own variables.
var grafanaBuiltins = map[string]bool{
	"__rate_interval": true, "__interval": true, "__interval_ms": true, "__range": true, "__range_s": true,
	"__range_ms": true, "__all": true, "__dashboard": true, "__from": true, "__to": true,
}

// labelValuesRE matches a Grafana Prometheus variable query
// label_values(selector, label).
var labelValuesRE = regexp.MustCompile(`^label_values\((.+),\s*([A-Za-z_][A-Za-z0-9_]*)\)$`)

// TestGrafanaDashboardModel checks that deploy/grafana/txoutbox.json has
// what Grafana needs to import it: a title, a uid, a schemaVersion, panels
// with unique ids, a grid position inside the 24 columns, a data source
// and queries with unique refIds; and that every variable the queries use
// is defined.
func TestGrafanaDashboardModel(t *testing.T) {
	t.Parallel()
	d := loadDashboard(t)
	if d.Title == "" || d.UID == "" || len(d.UID) > 40 {
		t.Errorf("title %q, uid %q: want both, the uid at most 40 characters", d.Title, d.UID)
	}
	if d.SchemaVersion < 36 {
		t.Errorf("schemaVersion %d; want 36 (Grafana 9) or later", d.SchemaVersion)
	}
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		if v.Type == "datasource" && string(v.Query) != `"prometheus"` {
			t.Errorf("variable %s: a data source variable of %s, want prometheus", v.Name, v.Query)
		}
	}
	if !vars["datasource"] {
		t.Error("no datasource variable: the panels name ${datasource}")
	}
	checkVars := func(where, s string) {
		for _, m := range grafanaVarRE.FindAllStringSubmatch(s, -1) {
			name := m[1] + m[2]
			if !vars[name] && !grafanaBuiltins[name] {
				t.Errorf("%s: variable $%s is not defined", where, name)
			}
		}
	}
	panels := allPanels(d.Panels)
	if len(panels) == 0 {
		t.Fatal("no panels")
	}
	ids := map[int]string{}
	queries := 0
	for _, p := range panels {
		where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
		if prev, dup := ids[p.ID]; dup || p.ID <= 0 {
			t.Errorf("%s: id not positive or not unique (also %q)", where, prev)
		}
		ids[p.ID] = p.Title
		if p.Type == "" || p.Title == "" {
			t.Errorf("%s: type %q; want a type and a title", where, p.Type)
		}
		if g := p.GridPos; g == nil || g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
			t.Errorf("%s: gridPos %+v; want h and w positive, within 24 columns", where, g)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID == "" {
			t.Errorf("%s: datasource %+v; want prometheus, ${datasource}", where, p.Datasource)
		} else {
			checkVars(where, p.Datasource.UID)
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: no targets", where)
		}
		refIDs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.RefID == "" || refIDs[tg.RefID] || strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("%s: target %q: want a unique refId and an expr", where, tg.RefID)
			}
			refIDs[tg.RefID] = true
			checkVars(where, tg.Expr)
			queries++
		}
	}
	t.Logf("%s: %d panels, %d queries, variables %v", dashboardFile, len(panels), queries, slices.Sorted(maps.Keys(vars)))
}

// deployOK's handler succeeds.
type deployOK struct{}

func (deployOK) Topic() string { return "deploy.ok" }

// deployFail's handler fails for good: its entry is dead at once.
type deployFail struct{}

func (deployFail) Topic() string { return "deploy.fail" }

// deployCheckKind registers the handlers of deployOK and deployFail.
var deployCheckKind = sidecar.Kind{Name: "deploycheck", Register: func(h *relay.Handlers, _ json.RawMessage, _ func(string) string, opts ...relay.HandlerOption) error {
	relay.Handle(h, func(ctx context.Context, e *relay.Entry[deployOK]) error { return nil }, opts...)
	relay.Handle(h, func(ctx context.Context, e *relay.Entry[deployFail]) error {
		return relay.Permanent(errors.New("deploy check: fails for good"))
	}, opts...)
	return nil
}}

// scrapeSidecar runs the relay command in this process on a fresh
// database, lets it finish an entry and dead-letter another (so that every
// labelled series exists), leaves a third pending, and returns its
// /metrics.
func scrapeSidecar(t *testing.T) string {
	t.Helper()
	db := outboxtest.New(t)
	ctx := context.Background()
	for _, m := range []outbox.Message{deployOK{}, deployFail{}, outbox.Raw{TopicName: "deploy.nobody", Payload: []byte(`{}`)}} {
		if _, err := outbox.Enqueue(ctx, db.Pool, m); err != nil {
			t.Fatal(err)
		}
	}
	addr := freeAddr(t)
	path := writeConfig(t, `{"log": {"level": "error"}, "relay": {"poll_interval": "50ms"}, "handlers": [{"kind": "deploycheck"}]}`)
	runCtx, cancel := context.WithCancel(ctx)
	code := make(chan int, 1)
	go func() {
		code <- sidecar.Main(runCtx, []string{"relay", "--config", path, "--listen", addr}, sidecar.Options{
			Stdout: io.Discard, Stderr: io.Discard,
			Getenv: func(k string) string { return map[string]string{"DATABASE_URL": db.URL}[k] },
			Kinds:  []sidecar.Kind{deployCheckKind},
		})
	}()
	t.Cleanup(func() {
		cancel()
		if c := <-code; c != sidecar.ExitOK {
			t.Errorf("relay command exited %d", c)
		}
	})
	var body string
	poll(t, "/metrics with a done and a dead outcome", func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			return false
		}
		body = string(b)
		return strings.Contains(body, `outcome="done"`) && strings.Contains(body, `outcome="dead"`) &&
			strings.Contains(body, `txoutbox_entries_dead{`) && strings.Contains(body, `txoutbox_handler_duration_seconds_bucket{`)
	})
	return body
}

// TestDeployFilesNameExportedMetrics checks every PromQL expression of
// deploy/ (the dashboard's queries and variable queries, the alerting
// rules) against what a running sidecar's /metrics exports: each metric
// name is a series there (or `up`, which Prometheus makes), and each label
// a selector matches on is a label of that series (or job and instance,
// which Prometheus adds).
func TestDeployFilesNameExportedMetrics(t *testing.T) {
	t.Parallel()
	exported, err := parseExposition(scrapeSidecar(t))
	if err != nil {
		t.Fatal(err)
	}
	labelsOf := func(metric string) (map[string]bool, bool) {
		ls, ok := exported[metric]
		if !ok && !targetSeries[metric] {
			return nil, false
		}
		out := map[string]bool{}
		for l := range ls {
			out[l] = true
		}
		for _, l := range targetLabels {
			out[l] = true
		}
		return out, true
	}
	used := map[string]bool{}
	check := func(where, expr string) []selectorRef {
		refs, err := promqlSelectors(expr)
		if err != nil {
			t.Errorf("%s: %v in %s", where, err, expr)
			return nil
		}
		if len(refs) == 0 {
			t.Errorf("%s: no metric in %s", where, expr)
		}
		for _, r := range refs {
			labels, ok := labelsOf(r.Metric)
			if !ok {
				t.Errorf("%s: %s is not exported by the sidecar (expression %s)", where, r.Metric, expr)
				continue
			}
			used[r.Metric] = true
			for _, l := range r.Labels {
				if !labels[l] {
					t.Errorf("%s: %s has no label %q (expression %s)", where, r.Metric, l, expr)
				}
			}
		}
		return refs
	}

	d := loadDashboard(t)
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			check(fmt.Sprintf("%s: panel %q target %s", dashboardFile, p.Title, tg.RefID), tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		where := fmt.Sprintf("%s: variable %s", dashboardFile, v.Name)
		m := labelValuesRE.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("%s: query %q is not label_values(selector, label)", where, v.Definition)
			continue
		}
		for _, r := range check(where, m[1]) {
			if labels, ok := labelsOf(r.Metric); ok && !labels[m[2]] {
				t.Errorf("%s: %s has no label %q", where, r.Metric, m[2])
			}
		}
	}

	exprs, err := ruleExprs(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(exprs) == 0 {
		t.Fatalf("%s: no expr found", alertsFile)
	}
	for line, expr := range exprs {
		check(fmt.Sprintf("%s:%d", alertsFile, line), expr)
	}

	names := slices.Sorted(maps.Keys(used))
	t.Logf("%d alert expressions and the dashboard use %d of the %d series names exported: %s",
		len(exprs), len(names), len(exported), strings.Join(names, " "))
}

// TestAlertRulesWithPromtool runs `promtool check rules` on alerts.yml and
// `promtool test rules` on alerts_test.yml, when promtool is installed.
// CI installs it (.ci/promtool.sh); without it the test says so and skips.
func TestAlertRulesWithPromtool(t *testing.T) {
	t.Parallel()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not found on PATH, so the alerting rules were not checked here; " +
			"install Debian's prometheus package (or, as root, run .ci/promtool.sh) to run this test")
	}
	for _, args := range [][]string{{"check", "rules", alertsFile}, {"test", "rules", alertsTest}} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		out, err := exec.CommandContext(ctx, promtool, args...).CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
			continue
		}
		t.Logf("promtool %s:\n%s", strings.Join(args, " "), strings.TrimSpace(string(out)))
	}
}
