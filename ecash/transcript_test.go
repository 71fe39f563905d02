package ecash_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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

// TestTranscriptDecoded: every e-cash step carries its decoded fields, which
// agree with the bytes; a signature beside the data is recorded in hex; a
// step without a decoder, or data its decoder refuses, is recorded without
// them.
func TestTranscriptDecoded(t *testing.T) {
	w := newWorld(t)
	swap, err := ecash.NewSwapRequest(w.coins[:1], []ed25519.PrivateKey{w.secrets[0].CoinKey}, []ecash.Amount{eur5},
		w.withdrawRequest().Planchets[:1], t0Millis)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := ecash.SealPayment(w.ks.HPKEPub, w.req, w.pay)
	if err != nil {
		t.Fatal(err)
	}
	wr := w.withdrawRequest()
	cases := []struct {
		step string
		data []byte
		want map[string]any // a few fields of decoded
	}{
		{"withdraw-request", wr.Body(), map[string]any{"account": json.Number("42"), "request_hash": ecash.HashOf(wr.Body()).String()}},
		{"coin", w.coins[0].Encode(), map[string]any{"coin_id": w.coins[0].ID().String()}},
		{"payment-request", w.req.Body(), map[string]any{"amount": "EUR:10.00", "order_id": testOrder, "payment_hash": w.req.Hash().String()}},
		{"sealed-payment", sealed, map[string]any{"ciphertext_bytes": json.Number(fmt.Sprint(len(sealed) - 32))}},
		{"deposit-receipt", w.receipt().Encode(), map[string]any{"total": "EUR:10.00", "merchant_account": json.Number("7")}},
		{"double-spend-proof", w.proof().Encode(), map[string]any{"signer": hex.EncodeToString(edPub(w.signing))}},
		{"swap-request", swap.Body(), map[string]any{"outputs_hash": swap.OutputsHash().String()}},
	}
	var buf bytes.Buffer
	tr := ecash.NewTranscript(&buf, "wallet")
	for _, c := range cases {
		if err := tr.Record(t0, c.step, c.data, ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := tr.RecordEntry(t0, ecash.TranscriptEntry{Step: "withdraw-request", Data: wr.Body(), Sig: []byte{1, 2}, Signer: edPub(w.account)}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []ecash.TranscriptEntry{{Step: "quote", Data: []byte{1}}, {Step: "coin", Data: []byte{1}}} {
		if err := tr.RecordEntry(t0, bad); err != nil {
			t.Fatal(err)
		}
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != len(cases)+3 {
		t.Fatalf("%d lines", len(lines))
	}
	for i, c := range cases {
		var r ecash.TranscriptRecord
		if err := json.Unmarshal([]byte(lines[i]), &r); err != nil {
			t.Fatal(err)
		}
		if r.Step != c.step || r.Data != hex.EncodeToString(c.data) || r.Sig != "" || r.Signer != "" {
			t.Fatalf("%s: record %s", c.step, lines[i])
		}
		d := json.NewDecoder(bytes.NewReader(r.Decoded))
		d.UseNumber()
		var got map[string]any
		if err := d.Decode(&got); err != nil {
			t.Fatalf("%s: decoded %s: %v", c.step, r.Decoded, err)
		}
		for k, v := range c.want {
			if got[k] != v {
				t.Errorf("%s: decoded %s = %v, want %v", c.step, k, got[k], v)
			}
		}
		again, err := ecash.DecodeTranscriptData(c.step, c.data)
		if err != nil || !bytes.Equal(again, r.Decoded) {
			t.Errorf("%s: DecodeTranscriptData disagrees with the writer (%v)", c.step, err)
		}
	}
	var signed ecash.TranscriptRecord
	if err := json.Unmarshal([]byte(lines[len(cases)]), &signed); err != nil {
		t.Fatal(err)
	}
	if signed.Sig != "0102" || signed.Signer != hex.EncodeToString(edPub(w.account)) || signed.Decoded == nil {
		t.Errorf("signed record %s", lines[len(cases)])
	}
	for _, l := range lines[len(cases)+1:] {
		if strings.Contains(l, `"decoded"`) {
			t.Errorf("decoded fields for data without a decoder or refused by it: %s", l)
		}
	}
	if dec, err := ecash.DecodeTranscriptData("quote", []byte{1}); dec != nil || err != nil {
		t.Errorf("unregistered step: %s, %v", dec, err)
	}
	if _, err := ecash.DecodeTranscriptData("sealed-payment", make([]byte, 47)); !errors.Is(err, ecash.ErrMalformed) {
		t.Errorf("short sealed payment: %v", err)
	}
}

// TestTranscriptCompatible: a record of the first format (no optional
// fields) still reads, and the writer's records read as that format did.
func TestTranscriptCompatible(t *testing.T) {
	var r ecash.TranscriptRecord
	old := `{"time_unix_ms":1741964966535,"party":"wallet","step":"coin","data":"00","note":"EUR:1.00"}`
	if err := json.Unmarshal([]byte(old), &r); err != nil || r.Step != "coin" || r.Data != "00" || r.Note != "EUR:1.00" || r.Decoded != nil {
		t.Fatalf("%+v %v", r, err)
	}
	var buf bytes.Buffer
	if err := ecash.NewTranscript(&buf, "merchant").Record(t0Millis, "sealed-payment", make([]byte, 48), "ord-1"); err != nil {
		t.Fatal(err)
	}
	var first struct {
		Time  int64  `json:"time_unix_ms"`
		Party string `json:"party"`
		Step  string `json:"step"`
		Data  string `json:"data"`
		Note  string `json:"note"`
	}
	if err := json.Unmarshal(buf.Bytes(), &first); err != nil || first.Party != "merchant" || len(first.Data) != 96 || first.Note != "ord-1" {
		t.Fatalf("%s: %v", buf.Bytes(), err)
	}
}

var testSteps atomic.Int32

func TestRegisterTranscriptDecoder(t *testing.T) {
	steps := ecash.TranscriptSteps()
	for _, s := range []string{"coin", "deposit-receipt", "double-spend-proof", "payment-request", "sealed-payment", "swap-request", "withdraw-request"} {
		if !slices.Contains(steps, s) {
			t.Errorf("step %s has no decoder", s)
		}
	}
	step := fmt.Sprintf("test-step-%d", testSteps.Add(1)) // unique under -count
	ecash.RegisterTranscriptDecoder(step, func(b []byte) (any, error) { return map[string]int{"n": len(b)}, nil })
	if dec, err := ecash.DecodeTranscriptData(step, []byte{1, 2}); err != nil || string(dec) != `{"n":2}` {
		t.Errorf("registered decoder: %s, %v", dec, err)
	}
	defer func() {
		if recover() == nil {
			t.Error("registering a step twice did not panic")
		}
	}()
	ecash.RegisterTranscriptDecoder("coin", nil)
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }
