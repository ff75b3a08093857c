package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
)

// The Standard Webhooks headers (https://www.standardwebhooks.com/).
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// signature returns the webhook-signature value for one message: for each
// key, "v1," and the base64 HMAC-SHA256 of "<id>.<timestamp>.<body>",
// space-separated.
func signature(keys [][]byte, id, timestamp string, body []byte) string {
	const sigLen = len("v1,") + 44 // base64 of 32 bytes
	out := make([]byte, 0, len(keys)*(sigLen+1))
	var sum [sha256.Size]byte
	for i, k := range keys {
		mac := hmac.New(sha256.New, k)
		mac.Write([]byte(id))
		mac.Write([]byte{'.'})
		mac.Write([]byte(timestamp))
		mac.Write([]byte{'.'})
		mac.Write(body)
		if i > 0 {
			out = append(out, ' ')
		}
		out = append(out, "v1,"...)
		out = base64.StdEncoding.AppendEncode(out, mac.Sum(sum[:0]))
	}
	return string(out)
}

// messageID returns the webhook-id for an entry key: the key itself when
// it survives an HTTP header unchanged (visible ASCII, inner spaces, as
// every key made by this library or a UUID does), else "txkey_" and the
// hex SHA-256 of the key, which is just as stable across attempts.
func messageID(key string) string {
	ok := key != "" && key[0] != ' ' && key[len(key)-1] != ' '
	for i := 0; ok && i < len(key); i++ {
		ok = key[i] >= 0x20 && key[i] < 0x7f
	}
	if ok {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return "txkey_" + hex.EncodeToString(sum[:])
}
