package bank

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc"

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
		// The key file's mark, the key's deposit end, then the one record.
		if len(onDisk) != 3*len(nonceRec{}) || !bytes.Equal(onDisk[2*len(nonceRec{})+32:2*len(nonceRec{})+64], nonce[:]) {
			t.Errorf("the nonce record file holds %x, want the mark, the deposit end and the one record of nonce %x", onDisk, nonce)
		}
	})
}

// TestSignerRefusesDenominationsNotWithdrawable: the signer blind-signs
// only for denominations withdrawable now by its clock, give or take
// ecash.MaxClockSkew, and not revoked in its key file; bankd, through
// RemoteKeys, gets ErrDenominationRevoked or ErrDenominationExpired, and a
// refused request records no CS nonce. Prepare, which recoup and restore
// need for such keys, still answers.
func TestSignerRefusesDenominationsNotWithdrawable(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	k, err := GenerateKeys(KeyConfig{Currency: "EUR", Values: []ecash.Amount{{Currency: "EUR", Value: 1}, {Currency: "EUR", Value: 2}}, Cipher: ecash.CipherCS,
		WithdrawPeriod: 30 * 24 * time.Hour, DepositPeriod: 60 * 24 * time.Hour, Overlap: 24 * time.Hour, Until: start.Add(40 * 24 * time.Hour)}, start, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var current, next, revoked *DenomKey
	for i := range k.Denoms {
		switch d := &k.Denoms[i]; {
		case d.Value.Value == 2 && d.WithdrawStart.Equal(start):
			revoked = d
		case d.Value.Value == 1 && d.WithdrawStart.Equal(start):
			current = d
		case d.Value.Value == 1 && d.WithdrawStart.After(start):
			next = d
		}
	}
	if current == nil || next == nil || revoked == nil {
		t.Fatalf("keys: %+v", k.Denoms)
	}
	if err := k.Revoke(revoked.ID, start); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, SignerNoncesFile)
	s, err := NewSignerServer(k, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	var clock atomic.Int64
	s.now = func() time.Time { return time.Unix(0, clock.Load()) }
	ln, err := ListenSignerSocket(filepath.Join(dir, "s.sock"))
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	s.Register(g)
	go g.Serve(ln)
	t.Cleanup(func() { g.Stop(); s.Close() })
	c, err := DialSigner("unix://" + ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	remote, err := c.RemoteKeys(k)
	if err != nil {
		t.Fatal(err)
	}
	signer := func(d *DenomKey) ecash.DenomPrivateKey {
		for _, r := range remote.Denoms {
			if r.ID == d.ID {
				return r.Private
			}
		}
		t.Fatalf("no remote key %x", d.ID[:8])
		return nil
	}
	records := func() int {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return len(b) / len(nonceRec{})
	}
	for _, tc := range []struct {
		what string
		d    *DenomKey
		at   time.Time
		want error // nil: signed
	}{
		{"the current key", current, start.Add(time.Hour), nil},
		{"a revoked key", revoked, start.Add(time.Hour), ecash.ErrDenominationRevoked},
		{"the next key, a month early", next, start.Add(time.Hour), ecash.ErrDenominationExpired},
		{"the next key, just within the clock skew before its start", next, next.WithdrawStart.Add(-ecash.MaxClockSkew + time.Second), nil},
		{"the next key, a clock skew before its start", next, next.WithdrawStart.Add(-ecash.MaxClockSkew - time.Second), ecash.ErrDenominationExpired},
		{"the current key, just within the clock skew after its end", current, current.WithdrawEnd.Add(ecash.MaxClockSkew - time.Second), nil},
		{"the current key, a clock skew after its end", current, current.WithdrawEnd.Add(ecash.MaxClockSkew), ecash.ErrDenominationExpired},
	} {
		clock.Store(tc.at.UnixNano())
		var nonce [32]byte
		rand.Read(nonce[:])
		// The first round answers for every key, revoked or not withdrawable.
		if _, err := signer(tc.d).Prepare(nonce[:]); err != nil {
			t.Errorf("%s: Prepare: %v", tc.what, err)
		}
		before := records()
		_, err := signer(tc.d).BlindSign(csChallenge(nonce))
		switch {
		case tc.want == nil && err != nil:
			t.Errorf("%s: %v, want a signature", tc.what, err)
		case tc.want != nil && !errors.Is(err, tc.want):
			t.Errorf("%s: %v, want %v", tc.what, err, tc.want)
		case tc.want != nil && records() != before:
			t.Errorf("%s: refused, but its nonce was recorded", tc.what)
		}
	}
}
