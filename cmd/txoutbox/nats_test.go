package main_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/handlers/nats"
	"github.com/txoutbox/txoutbox/internal/natstest"
)

// Rows inserted with plain SQL are published by the binary to a JetStream
// stream, each once, with the entry's key in Nats-Msg-Id; the server's
// token comes from the environment.
func TestBinaryPublishesPlainSQLRowsToNATS(t *testing.T) {
	t.Parallel()
	url := natstest.URL(t)
	st := natstest.NewStream(t, natstest.Connect(t, url), 0)
	db := newDB(t)
	config := writeFile(t, `{"log": {"format": "text"}, "relay": {"poll_interval": "50ms"},
		"handlers": [{"kind": "nats", "config": {
			"url": "`+url+`", "topics": ["order.created", "order.paid"],
			"subject": "`+st.Prefix+`.{{.Topic}}", "stream": "`+st.Name+`", "check_stream": true,
			"ack_timeout": "3s"}}]}`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "relay", "--config", config, "--listen", "off")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+db.URL)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()

	const n = 40
	if _, err := db.Pool.Exec(context.Background(), `
		INSERT INTO outbox_entries (topic, key, ordering_key, payload)
		SELECT CASE WHEN g % 2 = 0 THEN 'order.created' ELSE 'order.paid' END, 'order-' || (g / 2),
		       'order-' || (g / 2), jsonb_build_object('order', g / 2)
		FROM generate_series(0, $1 - 1) g`, n); err != nil {
		t.Fatal(err)
	}
	st.WaitCount(t, n, time.Minute)
	ids := map[string]int{}
	for _, m := range st.All(t) {
		ids[m.Headers().Get(nats.HeaderMsgID)]++
	}
	if len(ids) != n {
		t.Fatalf("%d distinct messages, want %d; relay output:\n%s", len(ids), n, out.String())
	}
	if ids["order.created:order-0"] != 1 || ids["order.paid:order-0"] != 1 {
		t.Fatalf("messages by id: %v", ids)
	}
}

// Configuration problems exit 2 naming the field: a credential variable
// that is not set, a template naming an unknown field, a stream that does
// not exist (with check_stream).
func TestBinaryNATSConfigErrorsExitTwo(t *testing.T) {
	t.Parallel()
	url := natstest.URL(t)
	for _, c := range []struct{ config, want string }{
		{`{"url": "nats://127.0.0.1:4222", "topics": ["a"], "token_env": "NO_SUCH_NATS_TOKEN"}`,
			"handlers[0].config.token_env: environment variable NO_SUCH_NATS_TOKEN is not set"},
		{`{"url": "nats://127.0.0.1:4222", "topics": ["a"], "subject": "x.{{.Topc}}"}`,
			"handlers[0].config.subject: nats: invalid subject: no field \"Topc\""},
		{`{"url": "nats://127.0.0.1:4222"}`, "handlers[0].config.topics: no topic"},
		{`{"topics": ["a"]}`, "handlers[0].config.url: required"},
		{`{"url": "` + url + `", "topics": ["a"], "stream": "NO_SUCH_STREAM_TXOUTBOX", "check_stream": true}`,
			"handlers[0].config.stream: nats: no stream for subject: stream \"NO_SUCH_STREAM_TXOUTBOX\" does not exist"},
	} {
		config := writeFile(t, `{"handlers": [{"kind": "nats", "config": `+c.config+`}]}`)
		code, out := run(t, []string{"DATABASE_URL=postgres://127.0.0.1:1/none"}, "relay", "--config", config, "--listen", "off")
		if code != 2 || !strings.Contains(out, c.want) {
			t.Errorf("%s: exit %d: %s\nwant exit 2 with %q", c.config, code, out, c.want)
		}
	}
}
