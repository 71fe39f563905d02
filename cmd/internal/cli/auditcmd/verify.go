package auditcmd

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/blindbank/blindbank/ecash"
)

// Options tune a transcript audit.
type Options struct {
	// Complete says the transcript holds the party's whole history, so
	// everything a message refers to must be in it: the coins a receipt or
	// swap spends must have been issued earlier in it, the payment request
	// a receipt answers and the EPO a receipt decides must be recorded.
	// Without it such gaps are listed as not verified.
	Complete bool
	// Decoded adds every message's decoded fields to the report.
	Decoded bool
}

// Report is the outcome of a transcript audit.
type Report struct {
	File       string       `json:"file"`
	BankID     string       `json:"bank_id"`
	Currency   string       `json:"currency"`
	MasterKey  string       `json:"master_key"`
	KeySets    int          `json:"key_sets"`
	Complete   bool         `json:"complete"`
	Lines      []LineResult `json:"lines"`
	Unverified []Unverified `json:"unverified"`
	Failures   int          `json:"failures"`
	OK         bool         `json:"ok"`
}

// LineResult is what the audit found for one line.
type LineResult struct {
	Line       int             `json:"line"`
	Party      string          `json:"party,omitempty"`
	Step       string          `json:"step,omitempty"`
	OK         bool            `json:"ok"`
	Summary    string          `json:"summary,omitempty"`
	Error      string          `json:"error,omitempty"`
	Unverified []string        `json:"unverified,omitempty"`
	Decoded    json.RawMessage `json:"decoded,omitempty"`
}

// Unverified is something the transcript does not let anyone check
// offline, and the lines it concerns.
type Unverified struct {
	What  string `json:"what"`
	Lines []int  `json:"lines"`
}

// FirstFailure is the first failed line, or nil.
func (r *Report) FirstFailure() *LineResult {
	for i := range r.Lines {
		if !r.Lines[i].OK {
			return &r.Lines[i]
		}
	}
	return nil
}

// maxLine bounds one transcript line: a NetBill delivery of 16 MiB of goods
// is 32 MiB of hex.
const maxLine = 40 << 20

// Verify audits the transcript read from r (name is for the report)
// against the key sets. The error is for failures to read; what the
// transcript fails is in the report.
func Verify(r io.Reader, name string, keys *KeySets, opts Options) (*Report, error) {
	v := &verifier{keys: keys, opts: opts, parties: map[string]*partyState{}}
	rep := &Report{
		File: name, BankID: keys.BankID().String(), Currency: keys.Currency(),
		MasterKey: hex.EncodeToString(keys.MasterPub()), KeySets: len(keys.Sets()), Complete: opts.Complete,
		Lines: []LineResult{}, Unverified: []Unverified{},
	}
	br := bufio.NewReaderSize(r, 64<<10)
	for n := 1; ; n++ {
		line, err := readLine(br)
		if err == io.EOF && line == nil {
			break
		}
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("%s line %d: %w", name, n, err)
		}
		rep.Lines = append(rep.Lines, v.line(n, line))
	}
	byWhat := map[string]*Unverified{}
	for _, l := range rep.Lines {
		if !l.OK {
			rep.Failures++
		}
		for _, u := range l.Unverified {
			if byWhat[u] == nil {
				byWhat[u] = &Unverified{What: u}
				rep.Unverified = append(rep.Unverified, Unverified{What: u})
			}
			byWhat[u].Lines = append(byWhat[u].Lines, l.Line)
		}
	}
	for i := range rep.Unverified {
		rep.Unverified[i].Lines = byWhat[rep.Unverified[i].What].Lines
	}
	rep.OK = rep.Failures == 0
	return rep, nil
}

// readLine reads one line without its newline; nil and io.EOF at the end.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxLine {
			return nil, fmt.Errorf("line longer than %d bytes", maxLine)
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err == io.EOF && len(line) == 0:
			return nil, io.EOF
		case err != nil && err != io.EOF:
			return nil, err
		}
		line = bytes.TrimSuffix(line, []byte("\n"))
		return bytes.TrimSuffix(line, []byte("\r")), nil
	}
}

type verifier struct {
	keys    *KeySets
	opts    Options
	parties map[string]*partyState
}

// record is a parsed transcript line.
type record struct {
	ecash.TranscriptRecord
	data, sig, signer []byte
}

// lineCtx is the line being checked.
type lineCtx struct {
	v   *verifier
	n   int
	rec *record
	res *LineResult
}

func (c *lineCtx) summaryf(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	if c.res.Summary != "" {
		c.res.Summary += "; " + s
	} else {
		c.res.Summary = s
	}
}

func (c *lineCtx) unverified(what string) { c.res.Unverified = append(c.res.Unverified, what) }

// missing reports that something the message refers to is not in the
// transcript: a failure for a complete transcript, else not verified.
func (c *lineCtx) missing(what string) error {
	if c.v.opts.Complete {
		return fmt.Errorf("%s (the transcript is said to be complete)", what)
	}
	c.unverified(what)
	return nil
}

// failf is a failure of the line being checked.
func failf(format string, args ...any) error { return fmt.Errorf(format, args...) }

func (v *verifier) line(n int, raw []byte) LineResult {
	res := LineResult{Line: n}
	rec, err := parseRecord(raw)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	res.Party, res.Step = rec.Party, rec.Step
	c := &lineCtx{v: v, n: n, rec: rec, res: &res}
	if err := v.check(c); err != nil {
		res.Error = err.Error()
		res.Summary = ""
		return res
	}
	res.OK = true
	return res
}

func (v *verifier) check(c *lineCtx) error {
	rec := c.rec
	if rec.Party != "wallet" && rec.Party != "merchant" {
		return failf("unknown party %q: a transcript is a wallet's or a merchant's", rec.Party)
	}
	check, ok := stepChecks[rec.Step]
	if !ok {
		return failf("unknown step %q: this audit checks %s", rec.Step, strings.Join(knownSteps(), ", "))
	}
	dec, err := decodedFields(rec.Step, rec.data)
	if err != nil {
		return failf("the message does not decode: %v", err)
	}
	if rec.Decoded != nil {
		if err := sameJSON(rec.Decoded, dec); err != nil {
			return failf("the decoded fields disagree with the data: %v", err)
		}
	}
	if v.opts.Decoded {
		c.res.Decoded = dec
	}
	if len(rec.sig) > 0 || len(rec.signer) > 0 {
		if !sigSteps[rec.Step] {
			return failf("a %s carries no signature beside its data, but the record has sig or signer", rec.Step)
		}
	}
	st := v.parties[rec.Party]
	if st == nil {
		st = newPartyState(rec.Party)
		v.parties[rec.Party] = st
	}
	err = check(st, c)
	st.prev = rec.Step
	return err
}

// sigSteps are the steps whose signature travels beside the data and may be
// recorded in sig (and signer).
var sigSteps = map[string]bool{"withdraw-request": true, "payment-request": true}

var stepChecks map[string]func(*partyState, *lineCtx) error

func init() {
	stepChecks = map[string]func(*partyState, *lineCtx) error{
		"withdraw-request":   (*partyState).withdrawRequest,
		"coin":               (*partyState).coin,
		"payment-request":    (*partyState).paymentRequest,
		"sealed-payment":     (*partyState).sealedPayment,
		"deposit-receipt":    (*partyState).depositReceipt,
		"double-spend-proof": (*partyState).doubleSpendProof,
		"swap-request":       (*partyState).swapRequest,
		"recoup-request":     (*partyState).recoupRequest,
		"recoup-receipt":     (*partyState).recoupReceipt,
		"refund-request":     (*partyState).refundRequest,
		"refund-receipt":     (*partyState).refundReceipt,
		"price-request":      (*partyState).priceRequest,
		"quote":              (*partyState).quote,
		"delivery":           (*partyState).delivery,
		"signed-epo":         (*partyState).signedEPO,
		"endorsement":        (*partyState).endorsement,
		"epo-receipt":        (*partyState).epoReceipt,
	}
}

func knownSteps() []string {
	out := make([]string, 0, len(stepChecks))
	for s := range stepChecks {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// parseRecord reads one line: one JSON object with exactly the fields of
// ecash.TranscriptRecord, byte strings in lower-case hex.
func parseRecord(raw []byte) (*record, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, errors.New("empty line: every line is one record")
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	rec := &record{}
	if err := d.Decode(&rec.TranscriptRecord); err != nil {
		return nil, fmt.Errorf("not a transcript record: %v", err)
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, errors.New("not a transcript record: more than one JSON value on the line")
	}
	switch {
	case rec.Step == "":
		return nil, errors.New("record without a step")
	case rec.Party == "":
		return nil, errors.New("record without a party")
	case rec.Time <= 0:
		return nil, errors.New("record without a time (time_unix_ms)")
	}
	var err error
	if rec.data, err = lowerHex("data", rec.Data); err != nil {
		return nil, err
	}
	if len(rec.data) == 0 {
		return nil, errors.New("record without data")
	}
	if rec.sig, err = lowerHex("sig", rec.Sig); err != nil {
		return nil, err
	}
	if rec.signer, err = lowerHex("signer", rec.Signer); err != nil {
		return nil, err
	}
	return rec, nil
}

func lowerHex(field, s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil || hex.EncodeToString(b) != s {
		return nil, fmt.Errorf("%s is not lower-case hex", field)
	}
	return b, nil
}

// sameJSON compares two JSON documents as values (numbers exactly).
func sameJSON(got, want []byte) error {
	parse := func(b []byte) (any, error) {
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			return nil, err
		}
		if _, err := d.Token(); err != io.EOF {
			return nil, errors.New("trailing data")
		}
		return v, nil
	}
	g, err := parse(got)
	if err != nil {
		return err
	}
	w, err := parse(want)
	if err != nil {
		return err
	}
	return diffJSON("decoded", g, w)
}

// diffJSON names the first field where got and want differ.
func diffJSON(path string, got, want any) error {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Errorf("%s is not an object", path)
		}
		keys := make([]string, 0, len(w)+len(g))
		for k := range w {
			keys = append(keys, k)
		}
		for k := range g {
			if _, ok := w[k]; !ok {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			if err := diffJSON(path+"."+k, g[k], w[k]); err != nil {
				return err
			}
		}
		return nil
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return fmt.Errorf("%s does not have %d elements", path, len(w))
		}
		for i := range w {
			if err := diffJSON(fmt.Sprintf("%s[%d]", path, i), g[i], w[i]); err != nil {
				return err
			}
		}
		return nil
	}
	if got != want {
		if want == nil {
			return fmt.Errorf("%s is not part of this message", path)
		}
		return fmt.Errorf("%s is %v, the data says %v", path, jsonText(got), jsonText(want))
	}
	return nil
}

func jsonText(v any) string {
	if v == nil {
		return "missing"
	}
	b, _ := json.Marshal(v)
	if len(b) > 80 {
		return string(b[:77]) + "..."
	}
	return string(b)
}

// canonical checks that a decoded message re-encodes to the recorded bytes.
func canonical(data, again []byte) error {
	if !bytes.Equal(data, again) {
		return errors.New("the data does not re-encode to the same bytes: not canonical")
	}
	return nil
}

// stamp renders a time of a message, in UTC to the millisecond.
func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// short renders the first 8 bytes of a hash or key for messages.
func short(b []byte) string {
	if len(b) > 8 {
		b = b[:8]
	}
	return hex.EncodeToString(b) + "…"
}

// partyState is what one party's lines have established so far.
type partyState struct {
	party string
	prev  string // the step of this party's previous line

	// e-cash
	coins      map[ecash.Hash]*coinInfo  // coins issued to the wallet, by id
	spends     map[ecash.Hash]*spendInfo // confirmed spends, by coin id
	issues     []*issue                  // withdraw and swap requests, in order
	issueBody  map[ecash.Hash]*issue     // by SHA-256 of the body
	payReqs    map[string]*payReq        // by order id, the latest
	payReqHash map[ecash.Hash]*payReq    // by payment hash
	sealed     map[string][]int          // order id -> lines of its sealed payments
	current    any                       // *payment or *issue (a swap): the operation in progress
	receipts   map[ecash.Hash]*receiptInfo
	recoups    map[ecash.Hash]*recoupInfo // recoup requests without outputs, by request hash
	refund     *refundState               // refund.go; nil until a refund line

	// NetBill
	priceReqs   map[[16]byte]*priceReqInfo
	quotes      []*quoteInfo
	epos        map[[24]byte][]*epoInfo // by EPOID
	endorsed    map[ecash.Hash]int      // EPO hash -> line of its endorsement
	epoReceipts map[[24]byte]*epoReceiptInfo
	decided     map[ecash.Hash]int // EPO hash -> line of the receipt deciding it
	deliveries  map[[24]byte]*deliveryInfo
}

func newPartyState(party string) *partyState {
	return &partyState{
		party: party, coins: map[ecash.Hash]*coinInfo{}, spends: map[ecash.Hash]*spendInfo{},
		issueBody: map[ecash.Hash]*issue{}, payReqs: map[string]*payReq{}, payReqHash: map[ecash.Hash]*payReq{},
		sealed: map[string][]int{}, receipts: map[ecash.Hash]*receiptInfo{}, recoups: map[ecash.Hash]*recoupInfo{},
		priceReqs: map[[16]byte]*priceReqInfo{}, epos: map[[24]byte][]*epoInfo{}, endorsed: map[ecash.Hash]int{},
		epoReceipts: map[[24]byte]*epoReceiptInfo{}, decided: map[ecash.Hash]int{}, deliveries: map[[24]byte]*deliveryInfo{},
	}
}

type coinInfo struct {
	line  int
	denom ecash.Denomination
}

type spendInfo struct {
	line int
	hash ecash.Hash // payment hash, or a swap's outputs hash
	what string
}

// issue is a withdraw or swap request: the coins it asks for, by
// denomination, that no coin line has taken yet.
type issue struct {
	line    int
	kind    string // "withdraw" or "swap"
	open    map[ecash.Hash]int
	swap    *ecash.SwapRequest
	inputs  []ecash.Hash
	outputs ecash.Hash          // a swap's outputs hash
	done    bool                // a swap some output coin confirmed
	refused bool                // a swap a double-spend proof refused
	credits map[ecash.Hash]bool // inputs that spend refund credit: coins spent before (refund.go)
}

type payReq struct {
	line int
	pr   *ecash.PaymentRequest
	hash ecash.Hash
}

// payment is a sealed payment in progress.
type payment struct {
	line    int
	order   string
	req     *payReq
	settled bool
}

type receiptInfo struct {
	line int
	raw  []byte
}

func (s *partyState) isWallet() bool { return s.party == "wallet" }

// ---- withdraw-request

func (s *partyState) withdrawRequest(c *lineCtx) error {
	r, err := ecash.DecodeWithdrawRequest(c.rec.data)
	if err != nil {
		return err
	}
	if err := canonical(c.rec.data, r.Body()); err != nil {
		return err
	}
	if !s.isWallet() {
		return failf("a withdraw request in a %s's transcript: only wallets withdraw", s.party)
	}
	total := ecash.Amount{Currency: c.v.keys.Currency()}
	open := map[ecash.Hash]int{}
	for i, p := range r.Planchets {
		d, err := c.v.keys.Denomination(p.Denom)
		if err != nil {
			return failf("planchet %d: %v", i+1, err)
		}
		debit, err := d.WithdrawDebit() // its value and its withdraw fee
		if err != nil {
			return failf("planchet %d: %v", i+1, err)
		}
		if total, err = total.Add(debit); err != nil {
			return failf("planchet %d: %v", i+1, err)
		}
		open[p.Denom]++
	}
	h := ecash.HashOf(c.rec.data)
	if err := s.bodySignature(c, "account", nil, ecash.WithdrawSignatureInput(r.Account, total, h)); err != nil {
		return err
	}
	if prev := s.issueBody[h]; prev != nil {
		c.summaryf("a retry of the withdraw request of line %d", prev.line)
		return nil
	}
	is := &issue{line: c.n, kind: "withdraw", open: open}
	s.issues = append(s.issues, is)
	s.issueBody[h] = is
	c.summaryf("account %d asks for %d %s worth %s", r.Account, len(r.Planchets), plural(len(r.Planchets), "coin", "coins"), total)
	return nil
}

// bodySignature checks the signature recorded beside a body, if any, over
// signed (what the key signs for the body). named is the key the body
// itself names (nil if it names none, as a withdraw request names only an
// account number).
func (s *partyState) bodySignature(c *lineCtx, who string, named ed25519.PublicKey, signed []byte) error {
	rec := c.rec
	if len(rec.sig) == 0 {
		if len(rec.signer) > 0 {
			return failf("signer without sig")
		}
		c.unverified(fmt.Sprintf("the %s signature on a %s is not recorded (it travels beside the body)", who, rec.Step))
		return nil
	}
	key := named
	if len(rec.signer) > 0 {
		if named != nil && !named.Equal(ed25519.PublicKey(rec.signer)) {
			return failf("the recorded signer %s is not the %s key the message names, %s", short(rec.signer), who, short(named))
		}
		key = rec.signer
	}
	if key == nil {
		return failf("the %s signature is recorded without the key it verifies under (signer)", who)
	}
	if err := ecash.CheckEd25519Key(key); err != nil {
		return failf("%s key: %v", who, err)
	}
	if err := ecash.VerifyBody(key, signed, rec.sig, rec.Step); err != nil {
		return failf("the %s signature does not verify: %v", who, err)
	}
	c.summaryf("%s signature verified", who)
	return nil
}

// ---- coin

func (s *partyState) coin(c *lineCtx) error {
	coin, err := ecash.DecodeCoin(c.rec.data)
	if err != nil {
		return err
	}
	if err := canonical(c.rec.data, coin.Encode()); err != nil {
		return err
	}
	if !s.isWallet() {
		return failf("a coin in a %s's transcript: only wallets hold coins", s.party)
	}
	d, err := c.v.keys.Denomination(coin.Denom)
	if err != nil {
		return failf("%v: not a coin of this bank", err)
	}
	if err := ecash.CheckEd25519Key(coin.Pub); err != nil {
		return failf("coin key: %v", err)
	}
	if err := coin.Verify(d.Key); err != nil {
		return failf("the bank's %s signature on the coin does not verify: not a coin the bank issued (%v)", d.Value, err)
	}
	if c.rec.Note != d.Value.String() {
		return failf("the note says the coin is worth %q; its denomination is %s", c.rec.Note, d.Value)
	}
	id := coin.ID()
	if prev := s.coins[id]; prev != nil {
		return failf("coin %s was recorded already at line %d", short(id[:]), prev.line)
	}
	if sp := s.spends[id]; sp != nil {
		return failf("coin %s was spent at line %d, before it was issued here", short(id[:]), sp.line)
	}
	// The request that asked for it: the latest with an open planchet of
	// this denomination (a wallet records coins right after their request).
	var from *issue
	for i := len(s.issues) - 1; i >= 0; i-- {
		if is := s.issues[i]; is.open[coin.Denom] > 0 {
			from = is
			break
		}
	}
	if from == nil {
		return failf("no withdraw or swap request before this line asked for a %s coin of denomination %s", d.Value, short(coin.Denom[:]))
	}
	from.open[coin.Denom]--
	if from.kind != "withdraw" && !from.done {
		// An output coin shows the swap (or recoup) went through: its
		// inputs are spent.
		from.done = true
		for _, in := range from.inputs {
			if from.credits[in] {
				continue // spent by its payment, and stays so
			}
			if sp := s.spends[in]; sp != nil && sp.hash != from.outputs {
				return failf("the swap of line %d went through, but its input %s was spent at line %d (%s)", from.line, short(in[:]), sp.line, sp.what)
			}
			s.spends[in] = &spendInfo{line: from.line, hash: from.outputs, what: from.kind}
		}
	}
	s.coins[id] = &coinInfo{line: c.n, denom: d}
	c.summaryf("%s coin %s (%s), from the %s request of line %d", d.Value, short(id[:]), d.Key.Cipher(), from.kind, from.line)
	return nil
}

// ---- payment-request

func (s *partyState) paymentRequest(c *lineCtx) error {
	p, err := ecash.DecodePaymentRequest(c.rec.data)
	if err != nil {
		return err
	}
	if err := canonical(c.rec.data, p.Body()); err != nil {
		return err
	}
	if bank := c.v.keys.BankID(); p.BankID != bank {
		return failf("the request names bank %s, not this bank (%s)", short(p.BankID[:]), short(bank[:]))
	}
	if p.Amount.Currency != c.v.keys.Currency() {
		return failf("the request is in %s; the bank holds %s", p.Amount.Currency, c.v.keys.Currency())
	}
	if sha256.Sum256([]byte(c.rec.Note)) != p.SummaryHash {
		return failf("the order summary in the note does not hash to the request's summary hash %s", short(p.SummaryHash[:]))
	}
	if err := ecash.CheckEd25519Key(p.MerchantPub); err != nil {
		return failf("merchant key: %v", err)
	}
	if err := s.bodySignature(c, "merchant", p.MerchantPub, c.rec.data); err != nil {
		return err
	}
	pr := &payReq{line: c.n, pr: p, hash: p.Hash()}
	s.payReqs[p.OrderID] = pr
	s.payReqHash[pr.hash] = pr
	c.summaryf("order %s: %s to account %d, payment hash %s", p.OrderID, p.Amount, p.MerchantAccount, short(pr.hash[:]))
	return nil
}

// ---- sealed-payment

const sealedUnverified = "the coins and deposit permissions of a sealed payment are sealed to the bank's HPKE key: only the bank can open them, and its receipt stands for what was inside"

func (s *partyState) sealedPayment(c *lineCtx) error {
	b := c.rec.data
	if len(b) < 32+16 || len(b) > ecash.MaxSealedLen {
		return failf("%v: a sealed payment of %d bytes", ecash.ErrMalformed, len(b))
	}
	order := c.rec.Note
	if order == "" || len(order) > ecash.MaxOrderIDLen {
		return failf("the note must be the order id the payment is for")
	}
	p := &payment{line: c.n, order: order, req: s.payReqs[order]}
	s.current = p
	s.sealed[order] = append(s.sealed[order], c.n)
	c.unverified(sealedUnverified)
	if p.req == nil {
		return c.missing("the payment request of the order a sealed payment is for is not in this transcript")
	}
	c.summaryf("order %s: %s sealed for the request of line %d (%d bytes)", order, p.req.pr.Amount, p.req.line, len(b))
	return nil
}

// ---- deposit-receipt

func (s *partyState) depositReceipt(c *lineCtx) error {
	r, err := ecash.DecodeDepositReceipt(c.rec.data)
	if err != nil {
		return err
	}
	if err := canonical(c.rec.data, r.Encode()); err != nil {
		return err
	}
	if err := c.v.keys.bankSigned(r.SignerPub, r.DepositedAt, r.Body(), r.Sig, "deposit receipt"); err != nil {
		return failf("the bank's signature: %v", err)
	}
	if len(r.Coins) == 0 {
		return failf("a receipt for no coins")
	}
	seen := map[ecash.Hash]bool{}
	for _, id := range r.Coins {
		if seen[id] {
			return failf("the receipt lists coin %s twice", short(id[:]))
		}
		seen[id] = true
	}
	if prev := s.receipts[r.PaymentHash]; prev != nil && !bytes.Equal(prev.raw, c.rec.data) {
		return failf("the bank signed two different receipts for payment %s: line %d and this one", short(r.PaymentHash[:]), prev.line)
	}

	// The payment it answers.
	var pr *payReq
	order := c.rec.Note // the merchant's note; a wallet's is empty
	switch {
	case order != "":
		pr = s.payReqs[order]
		if len(s.sealed[order]) == 0 {
			return failf("no sealed payment for order %s precedes this receipt", order)
		}
		if pr == nil {
			if err := c.missing("the payment request a receipt answers is not in this transcript"); err != nil {
				return err
			}
		} else if r.PaymentHash != pr.hash {
			return failf("the receipt is for another payment request: it names payment hash %s; order %s's request (line %d) hashes to %s",
				short(r.PaymentHash[:]), order, pr.line, short(pr.hash[:]))
		}
	default:
		pr = s.payReqHash[r.PaymentHash]
		cur, _ := s.current.(*payment)
		if cur != nil && s.prev == "sealed-payment" && cur.req != nil && cur.req.hash != r.PaymentHash {
			// A wallet records the receipt of the payment it just sealed.
			return failf("the receipt is for another payment request: it names payment hash %s; the payment sealed on the line before (order %s, request of line %d) hashes to %s",
				short(r.PaymentHash[:]), cur.order, cur.req.line, short(cur.req.hash[:]))
		}
		if pr == nil {
			if err := c.missing("the payment request a receipt answers is not in this transcript"); err != nil {
				return err
			}
		} else {
			order = pr.pr.OrderID
			if len(s.sealed[order]) == 0 {
				return failf("no sealed payment for order %s (request of line %d) precedes this receipt", order, pr.line)
			}
		}
	}
	if pr != nil {
		p := pr.pr
		if r.MerchantAccount != p.MerchantAccount {
			return failf("the receipt credits account %d; the request of line %d names account %d", r.MerchantAccount, pr.line, p.MerchantAccount)
		}
		if r.Total != p.Amount {
			return failf("the receipt's total is %s; the request of line %d asks for %s", r.Total, pr.line, p.Amount)
		}
		if r.DepositedAt.After(p.ExpiresAt.Add(ecash.MaxClockSkew)) {
			return failf("deposited at %s, after the request of line %d expired (%s, plus %s of clock skew)",
				stamp(r.DepositedAt), pr.line, stamp(p.ExpiresAt), ecash.MaxClockSkew)
		}
	}

	// The coins: spent once, held by the wallet, adding up.
	sum := ecash.Amount{Currency: r.Total.Currency}
	unknown := 0
	for _, id := range r.Coins {
		if sp := s.spends[id]; sp != nil && sp.hash != r.PaymentHash {
			return failf("coin %s was already spent at line %d (%s %s)", short(id[:]), sp.line, sp.what, short(sp.hash[:]))
		}
		ci := s.coins[id]
		if ci == nil {
			unknown++
			continue
		}
		if err := ci.denom.CanDeposit(r.DepositedAt); err != nil {
			return failf("coin %s (line %d): %v", short(id[:]), ci.line, err)
		}
		if sum, err = sum.Add(ci.denom.Net()); err != nil { // less its deposit fee
			return failf("coins: %v", err)
		}
	}
	switch {
	case !s.isWallet():
		c.unverified("which coins paid: a merchant never sees them; the receipt's coin ids are the bank's word")
	case unknown == 0 && sum != r.Total:
		return failf("the receipt's coins pay %s after their deposit fees, its total is %s", sum, r.Total)
	case unknown > 0:
		if err := c.missing("coins a receipt lists were not issued in this transcript: their values, and that the wallet held them, are not checked"); err != nil {
			return fmt.Errorf("%d of its %d coins: %w", unknown, len(r.Coins), err)
		}
	}
	for _, id := range r.Coins {
		if s.spends[id] == nil {
			s.spends[id] = &spendInfo{line: c.n, hash: r.PaymentHash, what: "payment"}
		}
	}
	if cur, ok := s.current.(*payment); ok && cur.req != nil && cur.req.hash == r.PaymentHash {
		cur.settled = true
	}
	if s.receipts[r.PaymentHash] == nil {
		s.receipts[r.PaymentHash] = &receiptInfo{line: c.n, raw: c.rec.data}
	}
	what := fmt.Sprintf("%s to account %d in %d %s", r.Total, r.MerchantAccount, len(r.Coins), plural(len(r.Coins), "coin", "coins"))
	if s.isWallet() && unknown == 0 {
		what += " the wallet held, adding up"
	}
	if pr != nil {
		what += fmt.Sprintf(", for the request of line %d", pr.line)
	}
	c.summaryf("bank signature verified; %s", what)
	return nil
}

// ---- double-spend-proof

func (s *partyState) doubleSpendProof(c *lineCtx) error {
	p, err := ecash.DecodeDoubleSpendProof(c.rec.data)
	if err != nil {
		return err
	}
	if err := canonical(c.rec.data, p.Encode()); err != nil {
		return err
	}
	// DoubleSpendProof.Verify, with the bank's key checked for the time the
	// proof states (a retired signing key within its window is fine).
	if err := c.v.keys.bankSigned(p.SignerPub, p.DetectedAt, p.Body(), p.BankSig, "double-spend proof"); err != nil {
		return failf("the proof does not verify: the bank's signature: %v", err)
	}
	d, err := c.v.keys.Denomination(p.Earlier.Coin.Denom)
	if err != nil {
		return failf("the proof does not verify: %v", err)
	}
	if d.Value != p.Earlier.Value {
		return failf("the proof does not verify: it states a %s coin of a %s denomination", p.Earlier.Value, d.Value)
	}
	if err := p.Earlier.Coin.Verify(d.Key); err != nil {
		return failf("the proof does not verify: the bank's signature on the coin: %v", err)
	}
	if err := p.Earlier.Verify(); err != nil {
		return failf("the proof does not verify: the coin's signature on its earlier deposit permission: %v", err)
	}
	id := p.Earlier.Coin.ID()
	earlier := p.Earlier.PaymentHash
	switch cur := s.current.(type) {
	case *payment:
		if cur.req != nil && cur.req.hash == earlier {
			return failf("the proof shows coin %s spent in the very payment it refuses (order %s, line %d)", short(id[:]), cur.order, cur.line)
		}
		cur.settled = true
		if s.isWallet() && s.coins[id] == nil {
			if err := c.missing("the coin a double-spend proof names was not issued in this transcript"); err != nil {
				return err
			}
		}
		c.summaryf("refuses the payment of order %s (line %d)", cur.order, cur.line)
	case *issue:
		found := false
		for _, in := range cur.inputs {
			found = found || in == id
		}
		if !found {
			return failf("the proof names coin %s, which is not an input of the swap of line %d", short(id[:]), cur.line)
		}
		if earlier == cur.outputs {
			return failf("the proof shows coin %s spent in the very swap it refuses (line %d)", short(id[:]), cur.line)
		}
		if cur.done {
			return failf("the swap of line %d went through (its coins are recorded), yet a proof refuses it", cur.line)
		}
		cur.refused = true
		clear(cur.open)
		c.summaryf("refuses the swap of line %d", cur.line)
	default:
		return failf("a double-spend proof, but no payment or swap is in progress")
	}
	s.current = nil
	if sp := s.spends[id]; sp != nil && sp.hash != earlier {
		return failf("the bank signed conflicting spends of coin %s: line %d shows it spent in %s %s, this proof in %s",
			short(id[:]), sp.line, sp.what, short(sp.hash[:]), short(earlier[:]))
	}
	if s.spends[id] == nil {
		s.spends[id] = &spendInfo{line: c.n, hash: earlier, what: "the earlier spend this proof shows"}
	}
	where := fmt.Sprintf("payment %s to account %d", short(earlier[:]), p.Earlier.MerchantAccount)
	if p.Earlier.MerchantAccount == ecash.SwapAccount {
		where = "swap " + short(earlier[:])
	}
	c.summaryf("bank, denomination and coin signatures verified: coin %s (%s) was spent before in %s", short(id[:]), p.Earlier.Value, where)
	return nil
}

// ---- swap-request

func (s *partyState) swapRequest(c *lineCtx) error {
	r, err := ecash.DecodeSwapRequest(c.rec.data)
	if err != nil {
		return err
	}
	if err := canonical(c.rec.data, r.Body()); err != nil {
		return err
	}
	if !s.isWallet() {
		return failf("a swap request in a %s's transcript: only wallets swap", s.party)
	}
	outputs, body := r.OutputsHash(), ecash.HashOf(c.rec.data)
	cur := c.v.keys.Currency()
	in, out := ecash.Amount{Currency: cur}, ecash.Amount{Currency: cur}
	seen, credits := map[ecash.Hash]bool{}, map[ecash.Hash]bool{}
	var ids []ecash.Hash
	unknown := 0
	for i := range r.Inputs {
		coin := r.Inputs[i].Coin
		d, err := c.v.keys.Denomination(coin.Denom)
		if err != nil {
			return failf("input %d: %v", i+1, err)
		}
		if err := ecash.CheckEd25519Key(coin.Pub); err != nil {
			return failf("input %d: coin key: %v", i+1, err)
		}
		if err := coin.Verify(d.Key); err != nil {
			return failf("input %d: the bank's signature on the coin does not verify: not a coin the bank issued (%v)", i+1, err)
		}
		id := coin.ID()
		if seen[id] {
			return failf("input %d: coin %s is given twice", i+1, short(id[:]))
		}
		seen[id] = true
		ids = append(ids, id)
		value := d.Value
		perm := r.PermissionOver(outputs, i, d.Value)
		if err := perm.Verify(); err != nil {
			credit := s.creditInput(perm, body, cur)
			if credit == 0 {
				return failf("input %d: the coin's signature on its swap permission does not verify, nor on a permission to spend refund credit this transcript shows (%v)", i+1, err)
			}
			value = ecash.Amount{Currency: cur, Value: credit} // refund credit pays no swap fee
			credits[id] = true
		} else if sp := s.spends[id]; sp != nil && sp.hash != outputs {
			return failf("input %d: coin %s was already spent at line %d (%s)", i+1, short(id[:]), sp.line, sp.what)
		} else {
			value.Value -= d.Fees.Swap.Value // a coin buys its value less its swap fee
		}
		if s.coins[id] == nil {
			unknown++
		}
		if in, err = in.Add(value); err != nil {
			return failf("inputs: %v", err)
		}
	}
	open := map[ecash.Hash]int{}
	for i, p := range r.Outputs {
		d, err := c.v.keys.Denomination(p.Denom)
		if err != nil {
			return failf("output %d: %v", i+1, err)
		}
		if out, err = out.Add(d.Value); err != nil {
			return failf("outputs: %v", err)
		}
		open[p.Denom]++
	}
	if in != out {
		return failf("the inputs buy %s after their swap fees, the outputs are worth %s: a swap keeps the value", in, out)
	}
	if unknown > 0 {
		if err := c.missing("coins a swap gives up were not issued in this transcript"); err != nil {
			return fmt.Errorf("%d of its %d inputs: %w", unknown, len(r.Inputs), err)
		}
	}
	h := ecash.HashOf(c.rec.data)
	if prev := s.issueBody[h]; prev != nil {
		s.current = prev
		c.summaryf("a retry of the swap request of line %d", prev.line)
		return nil
	}
	is := &issue{line: c.n, kind: "swap", open: open, swap: r, inputs: ids, outputs: outputs, credits: credits}
	s.issues = append(s.issues, is)
	s.issueBody[h] = is
	s.current = is
	c.summaryf("%d %s worth %s for %d new; every coin and permission signature verified", len(r.Inputs), plural(len(r.Inputs), "coin", "coins"), in, len(r.Outputs))
	return nil
}
