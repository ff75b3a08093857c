package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/internal/rabbittest"
)

// Rows inserted with plain SQL, as a Rails or Django app would, are
// published by the binary to the configured exchange, routed by a payload
// field, each with its key as message-id and its payload as the body; the
// URL comes from the environment.
func TestBinaryPublishesPlainSQLRowsToRabbitMQ(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	tp := rabbittest.NewTopology(t, "topic")
	eu := tp.Queue(t, nil, "eu.#")
	us := tp.Queue(t, nil, "us.#")
	config := writeFile(t, `{"log": {"format": "text"}, "relay": {"poll_interval": "50ms"},
		"handlers": [{"kind": "rabbitmq", "config": {
			"url_env": "TEST_RABBITMQ_URL", "exchange": "`+tp.Exchange+`",
			"routing_key": "{{.Payload.region}}.{{.Topic}}",
			"topics": ["orders.placed", "orders.shipped"], "confirm_timeout": "5s"}}]}`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "relay", "--config", config, "--listen", "off")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+db.URL, "TEST_RABBITMQ_URL="+tp.URL)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()

	const n = 50
	if _, err := db.Pool.Exec(context.Background(), `
		INSERT INTO outbox_entries (topic, key, payload)
		SELECT CASE WHEN g % 2 = 0 THEN 'orders.placed' ELSE 'orders.shipped' END, 'order-' || g,
		       jsonb_build_object('order', g, 'region', CASE WHEN g % 5 = 0 THEN 'us' ELSE 'eu' END)
		FROM generate_series(1, $1) g`, n); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		var done int
		if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox_entries WHERE state = 'done'`).Scan(&done); err != nil {
			t.Fatal(err)
		}
		if done == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d published; relay output:\n%s", done, n, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	seen := map[string]int{}
	for queue, region := range map[string]string{eu: "eu", us: "us"} {
		for _, d := range tp.Get(t, queue) {
			var body struct {
				Order  int
				Region string
			}
			if err := json.Unmarshal(d.Body, &body); err != nil {
				t.Fatal(err)
			}
			if d.MessageId != fmt.Sprintf("order-%d", body.Order) || body.Region != region || !strings.HasPrefix(d.RoutingKey, region+".orders.") {
				t.Fatalf("message-id %q routing key %q body %s in the %s queue", d.MessageId, d.RoutingKey, d.Body, region)
			}
			seen[d.MessageId]++
		}
	}
	if len(seen) != n {
		t.Fatalf("%d distinct messages; want %d", len(seen), n)
	}
}

// The URL's variable named in the file but missing from the environment,
// and a bad template, are configuration errors naming the field, without
// the URL.
func TestBinaryRabbitMQConfigErrorsExitTwo(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ config, env, want string }{
		{`{"url_env": "NO_SUCH_RABBIT_VAR", "topics": ["t"]}`, "", "url_env: environment variable NO_SUCH_RABBIT_VAR is not set"},
		{`{"url_env": "R_URL", "topics": ["t"], "routing_key": "{{.Topik}}"}`, "R_URL=amqp://u:s3cret@h/", "config.routing_key: unknown field .Topik"},
		{`{"url_env": "R_URL", "topics": []}`, "R_URL=amqp://u:s3cret@h/", "config.topics: name at least one topic"},
		{`{"url_env": "R_URL", "topics": ["t"]}`, "R_URL=http://u:s3cret@h/", "config.url_env (R_URL): not an AMQP URI"},
		{`{"url_env": "R_URL", "topics": ["t"], "password": "x"}`, "R_URL=amqp://u:s3cret@h/", "password"},
	} {
		config := writeFile(t, `{"handlers": [{"kind": "rabbitmq", "config": `+tc.config+`}]}`)
		env := []string{"DATABASE_URL=postgres://127.0.0.1:1/none"}
		if tc.env != "" {
			env = append(env, tc.env)
		}
		code, out := run(t, env, "relay", "--config", config, "--listen", "off")
		if code != 2 || !strings.Contains(out, tc.want) || strings.Contains(out, "s3cret") {
			t.Errorf("%s: exit %d: %s", tc.config, code, out)
		}
	}
}
