package bank

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"math"
	"slices"

	"github.com/blindbank/blindbank/ecash"
)

// Limits on store operation fields, so that one record stays small. Every
// store enforces them, and the rest of an op's shape, through the Validate
// methods below: one definition of a well-formed op for all stores.
const (
	MaxNameLen       = 1024    // account name, bytes
	MaxMemoLen       = 1024    // credit memo, check memo and product, bytes
	MaxReferenceLen  = 1024    // credit reference, bytes
	MaxSigLen        = 8192    // one blind signature, bytes
	MaxPermissionLen = 8192    // one deposit permission, bytes
	MaxReceiptLen    = 1 << 20 // receipt or check record, bytes
	MaxNonceLen      = 64      // one CS nonce, bytes
	MaxEPOIDLen      = 128     // canonical EPOID, bytes
)

// ValidateSource checks a source of failed authentications (AuthFailure).
func ValidateSource(source string) error {
	if len(source) > MaxSourceLen {
		return invalidOp("source of %d bytes", len(source))
	}
	return nil
}

// IsSystem reports whether id is a system ledger account.
func IsSystem(id uint64) bool { return id < FirstUserAccount }

func invalidOp(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidOp, fmt.Sprintf(format, args...))
}

// ValidateAccount checks OpenAccount's arguments.
func ValidateAccount(name string, key ed25519.PublicKey) error {
	if len(key) != ed25519.PublicKeySize {
		return invalidOp("public key of %d bytes", len(key))
	}
	if len(name) > MaxNameLen {
		return invalidOp("name of %d bytes", len(name))
	}
	return nil
}

// Validate checks a credit's shape.
func (op *CreditOp) Validate() error {
	switch {
	case op.Amount <= 0:
		return invalidOp("credit or payout amount %d", op.Amount)
	case IsSystem(op.Account):
		return invalidOp("credit or payout of system account %d", op.Account)
	case len(op.Memo) > MaxMemoLen:
		return invalidOp("memo of %d bytes", len(op.Memo))
	case len(op.Reference) > MaxReferenceLen:
		return invalidOp("reference of %d bytes", len(op.Reference))
	}
	return nil
}

// Validate checks a withdrawal's shape.
func (op *WithdrawOp) Validate() error {
	switch {
	case op.Amount <= 0 || op.Fee < 0 || op.Amount > math.MaxInt64-op.Fee:
		return invalidOp("withdraw amount %d, fee %d", op.Amount, op.Fee)
	case IsSystem(op.Account):
		return invalidOp("withdraw from system account %d", op.Account)
	}
	return validateIssue(op.BlindSigs, op.Blinded, op.Locks)
}

// Validate checks a deposit's shape; it returns the coin ids sorted.
func (op *DepositOp) Validate() ([]ecash.Hash, error) {
	switch {
	case op.Amount <= 0 || op.Fee < 0 || op.Amount > math.MaxInt64-op.Fee:
		return nil, invalidOp("deposit amount %d, fee %d", op.Amount, op.Fee)
	case IsSystem(op.Merchant):
		return nil, invalidOp("deposit to system account %d", op.Merchant)
	case len(op.Receipt) == 0 || len(op.Receipt) > MaxReceiptLen:
		return nil, invalidOp("receipt of %d bytes", len(op.Receipt))
	}
	for i, c := range op.Coins {
		if c.Credit != 0 {
			return nil, invalidOp("deposit of coin %d's refund credit (only swaps spend credit)", i)
		}
	}
	return validateCoins(op.Coins)
}

// Validate checks a swap's shape; it returns the input coin ids sorted.
func (op *SwapOp) Validate() ([]ecash.Hash, error) {
	if op.Value <= 0 || op.Fee < 0 || op.Fee >= op.Value {
		return nil, invalidOp("swap value %d, fee %d", op.Value, op.Fee)
	}
	for i, c := range op.Coins {
		if c.Credit < 0 {
			return nil, invalidOp("input %d spends a credit of %d", i, c.Credit)
		}
	}
	if err := validateIssue(op.BlindSigs, op.Blinded, op.Locks); err != nil {
		return nil, err
	}
	return validateCoins(op.Coins)
}

// Validate checks a refund's shape: coins distinct, each value within its
// cap, and values summing to the amount.
func (op *RefundOp) Validate() error {
	switch {
	case op.Amount <= 0 || op.Fee < 0 || op.Amount > math.MaxInt64-op.Fee:
		return invalidOp("refund amount %d, fee %d", op.Amount, op.Fee)
	case IsSystem(op.Merchant):
		return invalidOp("refund from system account %d", op.Merchant)
	case len(op.Receipt) == 0 || len(op.Receipt) > MaxReceiptLen:
		return invalidOp("receipt of %d bytes", len(op.Receipt))
	case len(op.Coins) == 0 || len(op.Coins) > ecash.MaxCoinsPerRequest:
		return invalidOp("refund to %d coins", len(op.Coins))
	}
	var sum int64
	seen := make(map[ecash.Hash]bool, len(op.Coins))
	for i, c := range op.Coins {
		if c.Value <= 0 || c.Value > c.Cap {
			return invalidOp("refund of %d to coin %d, which paid %d", c.Value, i, c.Cap)
		}
		if seen[c.ID] {
			return fmt.Errorf("%w: %w: %x", ErrInvalidOp, ErrDuplicateCoin, c.ID[:8])
		}
		seen[c.ID] = true
		if sum += c.Value; sum <= 0 || sum > op.Amount {
			return invalidOp("refunded coins exceed the amount %d", op.Amount)
		}
	}
	if sum != op.Amount {
		return invalidOp("refunded coins total %d, the amount is %d", sum, op.Amount)
	}
	return nil
}

// Validate checks a payment order's shape.
func (op *CheckOp) Validate() error {
	switch {
	case op.Amount <= 0:
		return invalidOp("check amount %d", op.Amount)
	case op.EPOID == "" || len(op.EPOID) > MaxEPOIDLen:
		return invalidOp("EPOID of %d bytes", len(op.EPOID))
	case IsSystem(op.Customer) || IsSystem(op.Merchant) || op.Customer == op.Merchant:
		return invalidOp("check from %d to %d", op.Customer, op.Merchant)
	case len(op.Memo) > MaxMemoLen || len(op.MerchantMemo) > MaxMemoLen || len(op.Product) > MaxMemoLen:
		return invalidOp("memo, merchant memo or product of %d/%d/%d bytes", len(op.Memo), len(op.MerchantMemo), len(op.Product))
	case len(op.Record) > MaxReceiptLen:
		return invalidOp("record of %d bytes", len(op.Record))
	}
	receipts := [][]byte{op.Approved, op.DeclinedFunds, op.DeclinedLimit}
	switch op.Declined {
	case "":
	case CheckDeclinedExpired, CheckDeclinedBadKey:
		if slices.ContainsFunc(receipts, func(r []byte) bool { return r != nil }) {
			return invalidOp("a check declined before the commit, with receipts for the commit to choose from")
		}
		receipts = [][]byte{op.DeclinedReceipt}
	default:
		return invalidOp("check declined as %q", op.Declined)
	}
	for _, r := range receipts {
		if len(r) == 0 || len(r) > MaxReceiptLen {
			return invalidOp("receipt of %d bytes", len(r))
		}
	}
	return nil
}

// validateIssue checks the blind signatures, blinded-message hashes and
// nonce locks of a withdrawal or swap: sizes, one hash per signature (or
// none), and no nonce twice (ErrNonceReused).
func validateIssue(sigs [][]byte, blinded []ecash.Hash, locks []NonceLock) error {
	if len(sigs) == 0 || len(sigs) > ecash.MaxCoinsPerRequest {
		return invalidOp("%d blind signatures", len(sigs))
	}
	if len(blinded) != 0 && len(blinded) != len(sigs) {
		return invalidOp("%d blinded-message hashes for %d signatures", len(blinded), len(sigs))
	}
	for i, sig := range sigs {
		if len(sig) == 0 || len(sig) > MaxSigLen {
			return invalidOp("blind signature %d of %d bytes", i, len(sig))
		}
	}
	if len(locks) > len(sigs) {
		return invalidOp("%d nonce locks for %d signatures", len(locks), len(sigs))
	}
	seen := make(map[string]bool, len(locks))
	for i, l := range locks {
		if len(l.Nonce) == 0 || len(l.Nonce) > MaxNonceLen {
			return invalidOp("nonce lock %d of %d bytes", i, len(l.Nonce))
		}
		k := string(l.Denom[:]) + string(l.Nonce)
		if seen[k] {
			return fmt.Errorf("%w: nonce twice in one request", ErrNonceReused)
		}
		seen[k] = true
	}
	return nil
}

// validateCoins checks spent coins (count, permission sizes, no coin twice:
// an error matching both ErrInvalidOp and ErrDuplicateCoin) and returns
// their ids sorted.
func validateCoins(coins []SpentCoin) ([]ecash.Hash, error) {
	if len(coins) == 0 || len(coins) > ecash.MaxCoinsPerRequest {
		return nil, invalidOp("%d coins", len(coins))
	}
	ids := make([]ecash.Hash, len(coins))
	for i, c := range coins {
		if len(c.Permission) == 0 || len(c.Permission) > MaxPermissionLen {
			return nil, invalidOp("permission %d of %d bytes", i, len(c.Permission))
		}
		ids[i] = c.ID
	}
	sorted := SortedHashes(ids)
	for i := 1; i < len(sorted); i++ {
		if sorted[i] == sorted[i-1] {
			return nil, fmt.Errorf("%w: %w: %x", ErrInvalidOp, ErrDuplicateCoin, sorted[i][:8])
		}
	}
	return sorted, nil
}

// SplitCredits separates a swap's inputs that spend coins from those that
// spend a coin's refund credit (SpentCoin.Credit).
func SplitCredits(coins []SpentCoin) (spends, credits []SpentCoin) {
	for _, c := range coins {
		if c.Credit > 0 {
			credits = append(credits, c)
		} else {
			spends = append(spends, c)
		}
	}
	return spends, credits
}

// SortedHashes returns a sorted copy of hs.
func SortedHashes(hs []ecash.Hash) []ecash.Hash {
	out := slices.Clone(hs)
	slices.SortFunc(out, func(a, b ecash.Hash) int { return bytes.Compare(a[:], b[:]) })
	return out
}
