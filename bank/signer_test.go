package bank

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// csChallenge is a CS blinded message for nonce: two random challenges
// (canonical scalars: below 2^252), then the nonce.
func csChallenge(nonce [32]byte) []byte {
	m := make([]byte, 96)
	rand.Read(m[:64])
	m[31] &= 0x0f
	m[63] &= 0x0f
	copy(m[64:], nonce[:])
	return m
}

// TestSignerRetryWaitsForDurableNonce: while another request's batch of
// nonce records is being written and synced, a request's record waits in
// the buffer for the next batch; the same request again (a retry, or a
// compromised bankd) finds the record taken and must wait for that batch
// too. Answered before the record is on disk, a crash would forget the
// nonce, and the restarted signer would answer a second challenge for it,
// which reveals the CS key. Both calls return once the record is in the
// file, with the same signature.
func TestSignerRetryWaitsForDurableNonce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k, err := GenerateKeys(KeyConfig{Currency: "EUR", Values: []ecash.Amount{{Currency: "EUR", Value: 1}}, Cipher: ecash.CipherCS}, time.Now(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), SignerNoncesFile)
		s, err := NewSignerServer(k, path, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		d := k.Denoms[0]
		var nonce [32]byte
		rand.Read(nonce[:])
		req := &pb.SignerBlindSignRequest{Items: []*pb.SignerBlindSignItem{{Denomination: d.ID[:], Blinded: csChallenge(nonce)}}}
		type answer struct {
			r   *pb.SignerBlindSignResponse
			err error
		}
		call := func() chan answer {
			c := make(chan answer, 1)
			go func() {
				r, err := s.BlindSign(t.Context(), req)
				c <- answer{r, err}
			}()
			return c
		}

		// Another batch is being written and synced (a slow disk).
		s.nonces.mu.Lock()
		s.nonces.busy = true
		s.nonces.mu.Unlock()
		first := call()
		synctest.Wait()
		retry := call()
		synctest.Wait()
		for name, c := range map[string]chan answer{"the first call": first, "the retry": retry} {
			select {
			case a := <-c:
				onDisk, _ := os.ReadFile(path)
				t.Errorf("%s was answered (err %v) with its nonce record not yet on disk (%d bytes in the file)", name, a.err, len(onDisk))
				c <- a
			default:
			}
		}

		// The other batch is synced: this one is written next.
		s.nonces.mu.Lock()
		s.nonces.busy = false
		s.nonces.cond.Broadcast()
		s.nonces.mu.Unlock()
		a, b := <-first, <-retry
		if a.err != nil || b.err != nil {
			t.Fatalf("first: %v; retry: %v", a.err, b.err)
		}
		if !bytes.Equal(a.r.Signatures[0], b.r.Signatures[0]) {
			t.Error("the retry was answered another signature")
		}
		onDisk, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(onDisk) != len(nonceRec{}) || !bytes.Equal(onDisk[32:64], nonce[:]) {
			t.Errorf("the nonce record file holds %x, want the one record of nonce %x", onDisk, nonce)
		}
	})
}
