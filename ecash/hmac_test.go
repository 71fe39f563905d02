package ecash

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"testing"
)

// TestHMAC checks the KDF's stack-buffer HMACs against RFC 4231 (test
// case 6: a 131-byte key, longer than either block) and against
// crypto/hmac for every key length around the block sizes and messages
// that outgrow the stack buffers.
func TestHMAC(t *testing.T) {
	key := bytes.Repeat([]byte{0xaa}, 131)
	msg := []byte("Test Using Larger Than Block-Size Key - Hash Key First")
	want256 := "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
	want512 := "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f352" +
		"6b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598"
	// The message split as the expand step splits its input: T(i-1),
	// info chunks, then the counter byte.
	if got := hmacSHA256(key, msg[:len(msg)-1], nil, msg[len(msg)-1]); hex.EncodeToString(got[:]) != want256 {
		t.Errorf("HMAC-SHA256, RFC 4231 case 6: %x", got)
	}
	if got := hmacSHA512(key, msg); hex.EncodeToString(got[:]) != want512 {
		t.Errorf("HMAC-SHA512, RFC 4231 case 6: %x", got)
	}
	data := make([]byte, 600)
	for i := range data {
		data[i] = byte(i*7 + 3)
	}
	for _, kl := range []int{0, 1, 32, 63, 64, 65, 127, 128, 129, 300} {
		for _, ml := range []int{0, 1, 31, 64, 128, 129, 200, 500} {
			k, m := data[:kl], data[100:100+ml]
			h := hmac.New(sha512.New, k)
			h.Write(m)
			if got := hmacSHA512(k, m); !bytes.Equal(got[:], h.Sum(nil)) {
				t.Errorf("HMAC-SHA512 key %d msg %d", kl, ml)
			}
			if ml == 0 {
				continue
			}
			h = hmac.New(sha256.New, k)
			h.Write(m)
			parts := [][]byte{m[:ml/3], m[ml/3 : ml-1]}
			if got := hmacSHA256(k, nil, parts, m[ml-1]); !bytes.Equal(got[:], h.Sum(nil)) {
				t.Errorf("HMAC-SHA256 key %d msg %d", kl, ml)
			}
		}
	}
}
