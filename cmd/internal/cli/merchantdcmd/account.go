package merchantdcmd

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/echeck"
	pb "github.com/blindbank/blindbank/proto"
)

// accountCheckTimeout bounds serve's check of --account: the check must not
// hold the start up for long when the bank is slow or away.
const accountCheckTimeout = 5 * time.Second

// checkAccount asks the bank whether account is this merchant's, and a
// merchant account, before serve starts: it asks for the account's
// statement of the last minute with a request signed by the merchant key,
// as "wallet statement" does for a customer. The bank serves it only to the
// account's key, and says with it whether the account is a merchant's.
//
// A refusal that names the account or the key (Unauthenticated, NotFound,
// PermissionDenied) is an error: a merchant serving the wrong account
// takes payments the bank then refuses, and they stay pending in the
// customers' wallets. So is a customer's account: the bank takes deposits
// into any account, but pays out only merchant accounts, so the merchant
// would take payments it is never paid. Anything else (the bank
// unreachable, a clock off, a rate limit, a bank that does not say the
// account's kind) only logs a warning: the bank's availability is no reason
// not to start, and the bank checks every deposit anyway.
//
// Each refused check counts, at the bank, as a failed authentication of
// account, as every deposit serve would make for it would.
func checkAccount(ctx context.Context, bank pb.BankClient, account uint64, key ed25519.PrivateKey, now time.Time, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, accountCheckTimeout)
	defer cancel()
	to := now.Truncate(time.Millisecond)
	req := echeck.NewStatementRequest(account, to.Add(-time.Minute), to, now, key)
	resp, err := bank.GetStatement(ctx, &pb.GetStatementRequest{Request: req.Encode()})
	pub := hex.EncodeToString(key.Public().(ed25519.PublicKey))
	switch status.Code(err) {
	case codes.OK:
		switch {
		case resp.Merchant == nil:
			log.Warn("the bank does not say whether --account is a merchant account (a bank before it says so); starting anyway", "account", account)
		case !*resp.Merchant:
			return fmt.Errorf("account %d is not a merchant account: the bank holds it, for the merchant key %s, as a customer's, and pays out only merchant accounts, so payments taken into it could never be paid out; a key holds one account: make a merchant key in a new data directory (\"merchantd init\"), have the bank open a merchant account for it (\"bankd admin open-account --merchant\") and give --account that one",
				account, pub)
		}
		return nil
	case codes.Unauthenticated, codes.NotFound, codes.PermissionDenied:
		return fmt.Errorf("account %d is not this merchant's: the bank refused a request for it signed by the merchant key %s (%s); give --account the merchant account the bank opened for that key",
			account, pub, status.Code(err))
	}
	log.Warn("could not check with the bank that --account is this merchant's; starting anyway", "account", account, "err", err)
	return nil
}
