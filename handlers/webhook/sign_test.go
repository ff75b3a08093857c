package webhook_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/handlers/webhook"
)

// The reference vector published with the Standard Webhooks libraries:
// a handler with that secret, clock and key, sending that body raw, must
// produce exactly that signature.
func TestSignatureMatchesTheSpecVector(t *testing.T) {
	t.Parallel()
	const (
		secret  = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
		msgID   = "msg_p5jXN8AQM9LWM0D4loKWxJek"
		payload = `{"test": 2432232314}`
		want    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	)
	rc := newReceiver(t, nil)
	cfg := webhook.Config{
		Endpoints:            map[string]webhook.Endpoint{"vector": {URL: rc.srv.URL, Secrets: []string{secret}, RawBody: true}},
		AllowPrivateNetworks: true,
		Clock:                func() time.Time { return time.Unix(1614265330, 0) },
	}
	h := newHandler(t, cfg)
	if err := h.Handle(context.Background(), entry(msgID, webhook.Event{Endpoint: "vector", Data: json.RawMessage(payload)})); err != nil {
		t.Fatal(err)
	}
	got := rc.requests()[0]
	if string(got.Body) != payload {
		t.Fatalf("body %q; want the raw data %q", got.Body, payload)
	}
	for name, want := range map[string]string{
		"webhook-id": msgID, "webhook-timestamp": "1614265330", "webhook-signature": want,
		"Content-Type": "application/json",
	} {
		if v := got.Header.Get(name); v != want {
			t.Errorf("%s: %q; want %q", name, v, want)
		}
	}
}

func TestSignatureVerifiesIndependently(t *testing.T) {
	t.Parallel()
	secret := newSecret(t)
	rc := newReceiver(t, nil)
	h := newHandler(t, oneEndpoint(rc.srv.URL+"/hooks", secret))
	e := entry("invoice.paid:inv_17", webhook.Event{Endpoint: "recv", Type: "invoice.paid", Data: json.RawMessage(`{"invoice": "inv_17", "note": "<&>"}`)})
	if err := h.Handle(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	got := rc.requests()[0]
	if err := verify(secret, got.Header, got.Body, time.Now(), time.Minute); err != nil {
		t.Fatalf("independent verification: %v", err)
	}
	if err := verify(newSecret(t), got.Header, got.Body, time.Now(), time.Minute); err == nil {
		t.Fatal("the verifier accepts any secret; it proves nothing")
	}
	if id := got.Header.Get("webhook-id"); id != e.Key {
		t.Errorf("webhook-id %q; want the entry key %q", id, e.Key)
	}
	if got.Method != "POST" || got.Path != "/hooks" {
		t.Errorf("%s %s; want POST /hooks", got.Method, got.Path)
	}
	var env struct {
		Type      string          `json:"type"`
		Timestamp time.Time       `json:"timestamp"`
		Data      json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(got.Body, &env); err != nil {
		t.Fatalf("body %s: %v", got.Body, err)
	}
	if env.Type != "invoice.paid" || !env.Timestamp.Equal(e.CreatedAt) || string(env.Data) != `{"invoice":"inv_17","note":"<&>"}` {
		t.Errorf("envelope %s; want type, the entry's creation time and the data", got.Body)
	}
}

func TestRotationSignsWithEverySecret(t *testing.T) {
	t.Parallel()
	oldSecret, newSecret2 := newSecret(t), newSecret(t)
	rc := newReceiver(t, nil)
	h := newHandler(t, oneEndpoint(rc.srv.URL, oldSecret, newSecret2))
	if err := h.Handle(context.Background(), entry("k-rot", webhook.Event{Endpoint: "recv", Type: "t", Data: json.RawMessage(`{}`)})); err != nil {
		t.Fatal(err)
	}
	got := rc.requests()[0]
	sigs := strings.Split(got.Header.Get("webhook-signature"), " ")
	if len(sigs) != 2 {
		t.Fatalf("webhook-signature %q; want two space-separated signatures", got.Header.Get("webhook-signature"))
	}
	// Each signature alone verifies with its own secret, and only with it.
	for i, secret := range []string{oldSecret, newSecret2} {
		for j, sig := range sigs {
			one := got.Header.Clone()
			one.Set("webhook-signature", sig)
			err := verify(secret, one, got.Body, time.Now(), time.Minute)
			if (i == j) != (err == nil) {
				t.Errorf("secret %d with signature %d: %v", i, j, err)
			}
		}
	}
}

// A key that a header would not carry unchanged becomes a stable derived
// id, the same on every attempt, and the signature still verifies.
func TestUnsafeKeyGetsAStableDerivedID(t *testing.T) {
	t.Parallel()
	secret := newSecret(t)
	rc := newReceiver(t, nil)
	h := newHandler(t, oneEndpoint(rc.srv.URL, secret))
	key := "commande:élan\n2"
	for range 2 {
		if err := h.Handle(context.Background(), entry(key, webhook.Event{Endpoint: "recv", Type: "t"})); err != nil {
			t.Fatal(err)
		}
	}
	sum := sha256.Sum256([]byte(key))
	want := "txkey_" + hex.EncodeToString(sum[:])
	for i, got := range rc.requests() {
		if id := got.Header.Get("webhook-id"); id != want {
			t.Errorf("request %d: webhook-id %q; want %q", i, id, want)
		}
		if err := verify(secret, got.Header, got.Body, time.Now(), time.Minute); err != nil {
			t.Errorf("request %d: %v", i, err)
		}
	}
}
