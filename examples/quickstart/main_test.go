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
	url := os.Getenv("TXOUTBOX_TEST_DATABASE_URL")
	if url == "" {
		t.Fatal("set TXOUTBOX_TEST_DATABASE_URL to a server where the test may CREATE DATABASE")
	}
	var out bytes.Buffer
	if err := run(context.Background(), &out, url); err != nil {
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
