package outbox

import (
	"crypto/rand"
	"encoding/hex"
	"time"
)

// generateKey returns the key of an entry enqueued without WithKey: a
// UUID in the version 7 layout (48 bits of Unix milliseconds, then random
// bits), as text. It matches the column default outbox_generate_key()
// (schema version 3) and is made here to spare the insert a function call.
// Time-ordered keys keep the (topic, key) index's inserts at its right-hand
// edge.
func generateKey() string {
	var b [16]byte
	ms := uint64(time.Now().UnixMilli())
	for i := range 6 {
		b[i] = byte(ms >> (40 - 8*i))
	}
	_, _ = rand.Read(b[6:]) // never fails (crypto/rand, Go 1.24+)
	b[6] = b[6]&0x0f | 0x70 // version 7
	b[8] = b[8]&0x3f | 0x80 // RFC 9562 variant
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:36], b[10:16])
	return string(out[:])
}
