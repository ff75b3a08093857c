package dashboard_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/txoutbox/txoutbox/dashboard"
	"github.com/txoutbox/txoutbox/relay"
)

// browserLimit bounds the browser test as a whole: a hang guard, not a
// timing assertion.
const browserLimit = 2 * time.Minute

// findChromium returns the browser to drive: $TXOUTBOX_CHROMIUM, or
// Debian's chromium on PATH. It fails the test when there is none: CI
// installs it (.ci/run), and a skipped browser test would prove nothing.
func findChromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("TXOUTBOX_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no Chromium found: this test drives a real headless browser. Install Debian's package " +
		"(apt-get install -y chromium), or set TXOUTBOX_CHROMIUM to a Chrome or Chromium binary.")
	return ""
}

// artifactsDir is where screenshots go: $TXOUTBOX_ARTIFACTS_DIR, or
// txoutbox-artifacts in the temporary directory. It is kept after the test.
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("TXOUTBOX_ARTIFACTS_DIR")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "txoutbox-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("artifacts directory: %v", err)
	}
	return dir
}

func saveScreenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(artifactsDir(t), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatalf("saving screenshot: %v", err)
	}
	t.Logf("screenshot: %s", path)
}

// TestBrowserRetriesADeadEntry drives Debian's Chromium, headless: it
// loads the dashboard, finds the dead entry, clicks its Retry button, and
// watches the entry's page (which reloads itself while the entry is not
// finished) until it shows the entry done, with the handler's result.
func TestBrowserRetriesADeadEntry(t *testing.T) {
	t.Parallel()
	chromium := findChromium(t)
	f := newFixture(t, dashboard.Config{Refresh: time.Second})
	id := f.deadInvoice(t, "INV-42")
	f.broken.Store(false) // the next attempt succeeds

	ctx, cancel := context.WithTimeout(t.Context(), browserLimit)
	defer cancel()
	chromeLog := &lockedBuffer{}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		chromedp.CombinedOutput(chromeLog),
	)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	defer cancelBrowser()

	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(testUser+":"+testPassword))
	overview := f.srv.URL + "/ui/"
	deadRow := fmt.Sprintf("#dead-%d", id)
	if _, err := chromedp.Call(bctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatalf("starting Chromium: %v\nbrowser output:\n%s", err, chromeLog.String())
	}
	if _, err := chromedp.Call(bctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{
		Headers: network.Headers{"Authorization": auth},
	}); err != nil {
		t.Fatalf("setting the credentials: %v", err)
	}
	if err := chromedp.Do(bctx, chromedp.Navigate(overview), chromedp.WaitVisible(chromedp.CSS(deadRow))); err != nil {
		t.Fatalf("loading the dashboard in Chromium: %v\nbrowser output:\n%s", err, chromeLog.String())
	}
	rowText, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(deadRow)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rowText, `template "invoice.html" not found`) {
		t.Errorf("dead entry row = %q, want its error", rowText)
	}
	saveScreenshot(t, bctx, "dashboard-dead-entry.png")

	if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS(fmt.Sprintf("#retry-%d", id)))); err != nil {
		t.Fatalf("clicking Retry: %v", err)
	}
	// The entry's page reloads itself every second until the entry is
	// finished; poll the page, not the database.
	for {
		if ctx.Err() != nil {
			html, _ := chromedp.Run(context.WithoutCancel(bctx), chromedp.OuterHTML(chromedp.CSS("html")))
			t.Fatalf("the entry's page never showed it done; relay events: %v\npage:\n%s", f.rec.Events(), html)
		}
		state, err := chromedp.Run(bctx, chromedp.Evaluate[string](`(document.querySelector("#entry") && document.querySelector("h1 [data-state]")) ? document.querySelector("h1 [data-state]").dataset.state : ""`))
		if err == nil && state == "done" {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	url, err := chromedp.Run(bctx, chromedp.Location())
	if err != nil {
		t.Fatalf("reading the location: %v", err)
	}
	result, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("#result")))
	if err != nil {
		t.Fatalf("reading the result: %v", err)
	}
	if !strings.HasSuffix(strings.SplitN(url, "?", 2)[0], fmt.Sprintf("/ui/entries/%d", id)) {
		t.Errorf("after Retry the browser is at %s, want the entry's page", url)
	}
	if !strings.Contains(result, "invoices/INV-42.pdf") {
		t.Errorf("result on the page = %q, want the handler's", result)
	}
	if f.rec.Count(id, relay.EventDone) != 1 {
		t.Errorf("relay events for the entry: %v, want one done", f.rec.Events())
	}
	saveScreenshot(t, bctx, "dashboard-entry-done.png")

	// Phone width: the overview must not scroll sideways.
	if err := chromedp.Do(bctx,
		chromedp.EmulateViewport(390, 844),
		chromedp.Navigate(overview),
		chromedp.WaitVisible(chromedp.CSS("#topics")),
	); err != nil {
		t.Fatalf("phone-width overview: %v", err)
	}
	fits, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth <= window.innerWidth`))
	if err != nil {
		t.Fatalf("measuring the phone-width overview: %v", err)
	}
	if !fits {
		t.Error("at 390px wide the overview is wider than the screen")
	}
	saveScreenshot(t, bctx, "dashboard-phone.png")
}

// lockedBuffer collects the browser's output; it is written by chromedp's
// copier while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *lockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
