package wallet

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// ReturnSummary is the order summary of a return; its hash is in the
// payment request.
const ReturnSummary = "coins returned to the wallet's own account"

// returnMerchant names the bank in the records of returns, where a payment
// names its merchant's address.
const returnMerchant = "(return to own account)"

// returnTTL is how long the bank accepts a return's payment request.
const returnTTL = 10 * time.Minute

// Return deposits coins worth amount into the wallet's own bank account:
// e-cash back to account money. The wallet is its own merchant: it signs a
// payment request to its account with the account key and deposits a
// payment sealed to the bank, as a merchant would. Change is made first if
// the coins cannot pay amount exactly. Like a payment, it settles only on
// the bank's word; an interrupted return stays pending until Recover, as
// does one whose receipt could not be checked (*KeySetUnfetchedError: the
// error wraps ErrPending). If the bank's answer to the swap making change
// is lost, nothing is deposited: the error is a *ChangePendingError, as a
// payment's is, and running the return again settles the swap, then
// returns once; Recover settles only the swap.
func (w *Wallet) Return(ctx context.Context, bank pb.BankClient, amount ecash.Amount) (*ecash.DepositReceipt, error) {
	account, ks, err := w.accountFor(ctx, bank, amount, "return")
	if err != nil {
		return nil, err
	}
	if err := w.recoverSwaps(ctx, bank, ks); err != nil {
		return nil, changePending(err)
	}
	w.mu.Lock()
	plan, err := w.planPayment(ks, amount)
	w.mu.Unlock()
	if err != nil {
		return nil, err
	}
	coins, err := w.payWith(ctx, bank, ks, plan)
	if err != nil {
		return nil, err
	}
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, err
	}
	now := time.UnixMilli(w.now().UnixMilli())
	pr := &ecash.PaymentRequest{
		BankID: ks.BankID(), MerchantAccount: account, MerchantPub: w.AccountKey(),
		OrderID: "return-" + hex.EncodeToString(id[:]), Amount: amount,
		SummaryHash: sha256.Sum256([]byte(ReturnSummary)), CreatedAt: now, ExpiresAt: now.Add(returnTTL),
	}
	body := pr.Body()
	sig := ecash.SignBody(w.acctKey, body)
	w.tr.RecordEntry(w.now(), ecash.TranscriptEntry{Step: "payment-request", Data: body, Sig: sig, Note: ReturnSummary})
	pp, err := w.reserveCoins(ks, pr, body, returnMerchant, pr.OrderID, coins)
	if err != nil {
		return nil, err
	}
	w.tr.Record(w.now(), "sealed-payment", pp.Sealed, pr.OrderID)
	resp, err := bank.Deposit(ctx, &pb.DepositRequest{PaymentRequest: body, MerchantSig: sig, SealedPayment: pp.Sealed})
	if err != nil {
		return w.paymentFailed(ctx, bank, ks, pr, pp, err)
	}
	return w.acceptReceipt(ctx, bank, ks, pr, pp, resp.Receipt)
}
