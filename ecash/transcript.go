package ecash

import (
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"
)

// TranscriptRecord is one protocol message as a wallet or merchant saw it:
// one JSON object per line (docs/TRANSCRIPTS.md specifies the format). Data
// holds the message's canonical bytes in lower-case hex, so an auditor can
// re-verify every signature offline against the key set; Decoded repeats its
// fields for people and is never trusted by a verifier, which decodes Data
// itself and refuses a record whose Decoded disagrees.
//
// Readers must accept records without the optional fields: transcripts
// written before Sig, Signer and Decoded existed have only time, party,
// step, data and note.
type TranscriptRecord struct {
	Time  int64  `json:"time_unix_ms"`
	Party string `json:"party"` // "wallet" or "merchant"
	Step  string `json:"step"`  // e.g. "withdraw-request", "deposit-receipt"
	Note  string `json:"note,omitempty"`
	// Decoded is the message's fields as JSON, for steps whose decoder is
	// registered (RegisterTranscriptDecoder); absent otherwise.
	Decoded json.RawMessage `json:"decoded,omitempty"`
	// Sig is a signature that travels beside Data rather than inside it
	// (the account signature of a withdraw request, the merchant signature
	// of a payment request), in hex; Signer is the public key it verifies
	// under, in hex, when Data does not name that key.
	Sig    string `json:"sig,omitempty"`
	Signer string `json:"signer,omitempty"`
	Data   string `json:"data"` // hex of the canonical encoding
}

// TranscriptEntry is one message to record with RecordEntry.
type TranscriptEntry struct {
	Step   string
	Data   []byte            // the canonical bytes, exactly as sent or received
	Sig    []byte            // optional: a signature over Data that travels beside it
	Signer ed25519.PublicKey // optional: the key Sig verifies under, if Data does not name it
	Note   string
}

// Transcript appends records to a writer; a nil *Transcript records nothing.
type Transcript struct {
	mu    sync.Mutex
	w     io.Writer
	party string
}

// NewTranscript records messages for party to w.
func NewTranscript(w io.Writer, party string) *Transcript {
	return &Transcript{w: w, party: party}
}

// Record writes one message. Errors writing the transcript are returned so a
// caller that asked for a transcript learns it is incomplete.
func (t *Transcript) Record(now time.Time, step string, data []byte, note string) error {
	return t.RecordEntry(now, TranscriptEntry{Step: step, Data: data, Note: note})
}

// RecordEntry writes one message with the signature that travels beside it,
// if any. Data that its step's decoder refuses is still recorded, without
// decoded fields: a transcript keeps what was received, and the auditor
// reports it.
func (t *Transcript) RecordEntry(now time.Time, e TranscriptEntry) error {
	if t == nil || t.w == nil {
		return nil
	}
	rec := TranscriptRecord{Time: now.UnixMilli(), Party: t.party, Step: e.Step, Note: e.Note, Data: hex.EncodeToString(e.Data)}
	if dec, err := DecodeTranscriptData(e.Step, e.Data); err == nil {
		rec.Decoded = dec
	}
	if len(e.Sig) > 0 {
		rec.Sig = hex.EncodeToString(e.Sig)
	}
	if len(e.Signer) > 0 {
		rec.Signer = hex.EncodeToString(e.Signer)
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	_, err = t.w.Write(append(b, '\n'))
	return err
}

// TranscriptDecoder renders the canonical bytes of one step's messages as
// their decoded fields: a value encoding/json marshals to a JSON object. It
// must refuse bytes that do not decode.
type TranscriptDecoder func(data []byte) (any, error)

var (
	transcriptMu       sync.RWMutex
	transcriptDecoders = map[string]TranscriptDecoder{
		"withdraw-request":   decodedWithdrawRequest,
		"coin":               decodedCoin,
		"payment-request":    decodedPaymentRequest,
		"sealed-payment":     decodedSealedPayment,
		"deposit-receipt":    decodedDepositReceipt,
		"double-spend-proof": decodedDoubleSpendProof,
		"swap-request":       decodedSwapRequest,
		"recoup-request":     decodedRecoupRequest,
		"recoup-receipt":     decodedDepositReceipt,
		"refund-request":     decodedRefundRequest,
		"refund-receipt":     decodedRefundReceipt,
	}
)

// RegisterTranscriptDecoder makes transcripts carry the decoded fields of
// step's messages. This package registers its own steps; a package defining
// more messages (echeck) registers its steps from an init function.
// Registering a step twice panics.
func RegisterTranscriptDecoder(step string, dec TranscriptDecoder) {
	transcriptMu.Lock()
	defer transcriptMu.Unlock()
	if _, ok := transcriptDecoders[step]; ok {
		panic("ecash: transcript decoder for " + step + " registered twice")
	}
	transcriptDecoders[step] = dec
}

// TranscriptSteps lists the steps with a registered decoder, sorted.
func TranscriptSteps() []string {
	transcriptMu.RLock()
	defer transcriptMu.RUnlock()
	out := make([]string, 0, len(transcriptDecoders))
	for s := range transcriptDecoders {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// DecodeTranscriptData renders data as the decoded fields of step (compact
// JSON). It returns nil and no error for a step without a decoder.
func DecodeTranscriptData(step string, data []byte) (json.RawMessage, error) {
	transcriptMu.RLock()
	dec := transcriptDecoders[step]
	transcriptMu.RUnlock()
	if dec == nil {
		return nil, nil
	}
	v, err := dec(data)
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// The decoded forms. Byte strings are lower-case hex, amounts their text
// form ("EUR:1.50"), times Unix milliseconds. Derived values (hashes, ids)
// are included where a verifier needs them to follow the bindings.

type trPlanchet struct {
	Denomination string `json:"denomination"`
	Blinded      string `json:"blinded"`
}

type trCoin struct {
	ID           string `json:"coin_id"`
	Denomination string `json:"denomination"`
	Pub          string `json:"coin_pub"`
	Sig          string `json:"signature"`
}

func trCoinOf(c Coin) trCoin {
	id := c.ID()
	return trCoin{ID: hex.EncodeToString(id[:]), Denomination: hex.EncodeToString(c.Denom[:]), Pub: hex.EncodeToString(c.Pub), Sig: hex.EncodeToString(c.Sig)}
}

func trPlanchets(ps []Planchet) []trPlanchet {
	out := make([]trPlanchet, len(ps))
	for i, p := range ps {
		out[i] = trPlanchet{Denomination: hex.EncodeToString(p.Denom[:]), Blinded: hex.EncodeToString(p.Blinded)}
	}
	return out
}

func hexHash(h Hash) string { return hex.EncodeToString(h[:]) }

func decodedWithdrawRequest(b []byte) (any, error) {
	r, err := DecodeWithdrawRequest(b)
	if err != nil {
		return nil, err
	}
	return struct {
		Hash      string       `json:"request_hash"`
		Account   uint64       `json:"account"`
		Nonce     string       `json:"nonce"`
		CreatedAt int64        `json:"created_at_unix_ms"`
		Planchets []trPlanchet `json:"planchets"`
	}{hexHash(HashOf(b)), r.Account, hex.EncodeToString(r.Nonce[:]), r.CreatedAt.UnixMilli(), trPlanchets(r.Planchets)}, nil
}

func decodedCoin(b []byte) (any, error) {
	c, err := DecodeCoin(b)
	if err != nil {
		return nil, err
	}
	return trCoinOf(c), nil
}

func decodedPaymentRequest(b []byte) (any, error) {
	p, err := DecodePaymentRequest(b)
	if err != nil {
		return nil, err
	}
	return struct {
		Hash            string `json:"payment_hash"`
		BankID          string `json:"bank_id"`
		MerchantAccount uint64 `json:"merchant_account"`
		MerchantPub     string `json:"merchant_pub"`
		OrderID         string `json:"order_id"`
		Amount          string `json:"amount"`
		SummaryHash     string `json:"summary_hash"`
		CreatedAt       int64  `json:"created_at_unix_ms"`
		ExpiresAt       int64  `json:"expires_at_unix_ms"`
	}{hexHash(HashOf(b)), hexHash(p.BankID), p.MerchantAccount, hex.EncodeToString(p.MerchantPub), p.OrderID,
		p.Amount.String(), hexHash(p.SummaryHash), p.CreatedAt.UnixMilli(), p.ExpiresAt.UnixMilli()}, nil
}

// minSealedLen is the smallest sealed message: the 32-byte HPKE
// encapsulated key and a 16-byte AEAD tag.
const minSealedLen = 32 + 16

func decodedSealedPayment(b []byte) (any, error) {
	if len(b) < minSealedLen || len(b) > MaxSealedLen {
		return nil, fmt.Errorf("%w: sealed payment of %d bytes", ErrMalformed, len(b))
	}
	return struct {
		Enc             string `json:"hpke_enc"`
		CiphertextBytes int    `json:"ciphertext_bytes"`
	}{hex.EncodeToString(b[:32]), len(b) - 32}, nil
}

func decodedDepositReceipt(b []byte) (any, error) {
	r, err := DecodeDepositReceipt(b)
	if err != nil {
		return nil, err
	}
	coins := make([]string, len(r.Coins))
	for i, c := range r.Coins {
		coins[i] = hexHash(c)
	}
	return struct {
		PaymentHash     string   `json:"payment_hash"`
		MerchantAccount uint64   `json:"merchant_account"`
		Total           string   `json:"total"`
		Coins           []string `json:"coins"`
		DepositedAt     int64    `json:"deposited_at_unix_ms"`
		Signer          string   `json:"signer"`
		Sig             string   `json:"signature"`
	}{hexHash(r.PaymentHash), r.MerchantAccount, r.Total.String(), coins, r.DepositedAt.UnixMilli(),
		hex.EncodeToString(r.SignerPub), hex.EncodeToString(r.Sig)}, nil
}

type trPermission struct {
	Coin            trCoin `json:"coin"`
	PaymentHash     string `json:"payment_hash"`
	MerchantAccount uint64 `json:"merchant_account"`
	Value           string `json:"value"`
	Timestamp       int64  `json:"timestamp_unix_ms"`
	CoinSig         string `json:"coin_sig"`
}

func decodedDoubleSpendProof(b []byte) (any, error) {
	p, err := DecodeDoubleSpendProof(b)
	if err != nil {
		return nil, err
	}
	e := p.Earlier
	return struct {
		Earlier    trPermission `json:"earlier"`
		DetectedAt int64        `json:"detected_at_unix_ms"`
		Signer     string       `json:"signer"`
		Sig        string       `json:"signature"`
	}{trPermission{trCoinOf(e.Coin), hexHash(e.PaymentHash), e.MerchantAccount, e.Value.String(), e.Timestamp.UnixMilli(), hex.EncodeToString(e.CoinSig)},
		p.DetectedAt.UnixMilli(), hex.EncodeToString(p.SignerPub), hex.EncodeToString(p.BankSig)}, nil
}

func decodedRecoupRequest(b []byte) (any, error) {
	r, err := DecodeRecoupRequest(b)
	if err != nil {
		return nil, err
	}
	return struct {
		Hash      string       `json:"request_hash"`
		Coin      trCoin       `json:"coin"`
		BlindSeed string       `json:"blind_seed"`
		CreatedAt int64        `json:"created_at_unix_ms"`
		Outputs   []trPlanchet `json:"outputs"`
		CoinSig   string       `json:"coin_sig"`
	}{hexHash(r.Hash()), trCoinOf(r.Coin), hex.EncodeToString(r.BlindSeed[:]), r.CreatedAt.UnixMilli(), trPlanchets(r.Outputs), hex.EncodeToString(r.CoinSig)}, nil
}

func decodedRefundRequest(b []byte) (any, error) {
	r, err := DecodeRefundRequest(b)
	if err != nil {
		return nil, err
	}
	return struct {
		Hash            string `json:"refund_hash"`
		PaymentHash     string `json:"payment_hash"`
		MerchantAccount uint64 `json:"merchant_account"`
		RefundID        uint64 `json:"refund_id"`
		Amount          string `json:"amount"`
		CreatedAt       int64  `json:"created_at_unix_ms"`
		MerchantSig     string `json:"merchant_sig"`
	}{hexHash(r.Hash()), hexHash(r.PaymentHash), r.MerchantAccount, r.RefundID, r.Amount.String(), r.CreatedAt.UnixMilli(),
		hex.EncodeToString(r.MerchantSig)}, nil
}

func decodedRefundReceipt(b []byte) (any, error) {
	r, err := DecodeRefundReceipt(b)
	if err != nil {
		return nil, err
	}
	type coin struct {
		Coin  string `json:"coin"`
		Value string `json:"value"`
	}
	coins := make([]coin, len(r.Coins))
	for i, c := range r.Coins {
		coins[i] = coin{hexHash(c.Coin), c.Value.String()}
	}
	return struct {
		RefundHash      string `json:"refund_hash"`
		PaymentHash     string `json:"payment_hash"`
		MerchantAccount uint64 `json:"merchant_account"`
		Total           string `json:"total"`
		Fee             string `json:"fee"`
		Coins           []coin `json:"coins"`
		RefundedAt      int64  `json:"refunded_at_unix_ms"`
		Signer          string `json:"signer"`
		Sig             string `json:"signature"`
	}{hexHash(r.RefundHash), hexHash(r.PaymentHash), r.MerchantAccount, r.Total.String(), r.Fee.String(), coins, r.RefundedAt.UnixMilli(),
		hex.EncodeToString(r.SignerPub), hex.EncodeToString(r.Sig)}, nil
}

func decodedSwapRequest(b []byte) (any, error) {
	r, err := DecodeSwapRequest(b)
	if err != nil {
		return nil, err
	}
	type input struct {
		Coin    trCoin `json:"coin"`
		CoinSig string `json:"coin_sig"`
	}
	ins := make([]input, len(r.Inputs))
	for i, in := range r.Inputs {
		ins[i] = input{trCoinOf(in.Coin), hex.EncodeToString(in.CoinSig)}
	}
	return struct {
		Hash        string       `json:"request_hash"`
		OutputsHash string       `json:"outputs_hash"`
		CreatedAt   int64        `json:"created_at_unix_ms"`
		Inputs      []input      `json:"inputs"`
		Outputs     []trPlanchet `json:"outputs"`
	}{hexHash(HashOf(b)), hexHash(r.OutputsHash()), r.CreatedAt.UnixMilli(), ins, trPlanchets(r.Outputs)}, nil
}
