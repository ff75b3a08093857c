package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
)

// The quickstart runs to completion and tells the whole story.
func TestQuickstart(t *testing.T) {
	// Without a URL, the test runs the quickstart's own throwaway-server
	// mode (a container or local binaries).
	var out bytes.Buffer
	err := runWithServer(context.Background(), &out, os.Getenv("TXOUTBOX_TEST_DATABASE_URL"), os.Getenv("TXOUTBOX_TEST_POSTGRES_IMAGE"))
	if err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	t.Log("\n" + out.String())
	for _, want := range []string{
		"duplicate=true",
		"email to ada@example.com sent",
		"delivered on attempt 2",
		"invoice for user",
		"1 user, 1 invoice, 3 entries done; the webhook needed 2 calls",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}
