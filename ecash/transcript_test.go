package ecash_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/blindbank/blindbank/ecash"
)

func TestDeriveAccountKey(t *testing.T) {
	k, err := ecash.DeriveAccountKey(seed(6))
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := ecash.DeriveAccountKey(seed(6))
	k3, _ := ecash.DeriveAccountKey(seed(7))
	if !k.Equal(k2) || k.Equal(k3) {
		t.Fatal("account key derivation")
	}
	ps, _ := ecash.DerivePlanchet(seed(6), 0)
	if k.Equal(ps.CoinKey) {
		t.Fatal("account key equals a coin key")
	}
	for _, n := range []int{0, 31, 33} {
		if k, err := ecash.DeriveAccountKey(make([]byte, n)); !errors.Is(err, ecash.ErrBadKey) || k != nil {
			t.Errorf("seed of %d bytes: %v", n, err)
		}
	}
}

func TestTranscript(t *testing.T) {
	var nilT *ecash.Transcript
	if err := nilT.Record(t0, "x", nil, ""); err != nil {
		t.Fatal(err)
	}
	if err := ecash.NewTranscript(nil, "wallet").Record(t0, "x", nil, ""); err != nil {
		t.Fatal(err)
	}

	var buf bytes.Buffer
	tr := ecash.NewTranscript(&buf, "wallet")
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			if err := tr.Record(t0Millis, "coin", []byte{byte(i)}, "n"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 10 {
		t.Fatalf("%d lines", len(lines))
	}
	for _, l := range lines {
		var r ecash.TranscriptRecord
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		b, err := hex.DecodeString(r.Data)
		if err != nil || len(b) != 1 || r.Time != t0Millis.UnixMilli() || r.Party != "wallet" || r.Step != "coin" || r.Note != "n" {
			t.Fatalf("record %s", l)
		}
	}

	if err := ecash.NewTranscript(failWriter{}, "merchant").Record(t0, "x", nil, ""); err == nil {
		t.Error("write error not returned")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }
