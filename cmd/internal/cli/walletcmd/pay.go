package walletcmd

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc"

	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/cmd/internal/transport"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

func payCommand(g *globals) *cli.Command {
	var (
		merchantAddr, order, uri, transcript string
		yes                                  bool
	)
	mtls := &cli.TLSFlags{Prefix: "merchant-", What: "merchant"}
	return &cli.Command{
		Name:  "pay",
		Short: "pay a merchant's order, or a payment URI, with coins",
		Long: `pay fetches the payment request of order --order from the merchant at
--merchant, checks it (the merchant's signature, the summary, that it names
your bank and has not expired), shows it with the fees paying it will cost
on top (the coins' deposit fees, and the swap fee if change must be made
first, as the bank's key set sets them) and asks "Pay? [y/N]". On yes it
makes that change if needed, takes coins that pay exactly the amount after
their fees, signs them over to this payment,
seals them to the bank (the merchant cannot read them) and hands them to the
merchant, who deposits them and returns the bank's signed receipt, which the
wallet verifies.

Without a terminal on stdin, pay refuses unless --yes is given. If the
connection fails after the coins were sent, or the bank's receipt names a
signing key your wallet does not know yet and the bank's key set cannot be
fetched to check it, the payment stays pending (exit 1; --json: "error":
"pending"): run the same command again, and the same sealed payment is
re-sent and paid at most once. If the bank's answer to the swap making
change is lost, nothing is sent to the merchant: pay says making change is
pending at the bank (exit 1; --json: "error": "change-pending"), the coin
swapped pending; run the same command again to finish the swap and pay,
once ("wallet recover" finishes the swap only; pay still pays). A recoup's
re-issue of a revoked coin left unanswered is finished first the same way:
if the bank still does not answer, pay says a recoup is pending (exit 1;
--json: "error": "recoup-pending"), and nothing is sent. An order the wallet
has paid is not paid again: pay says it was already paid, and when, from the
bank's receipt it kept (--json: "already_paid": true), whatever address it
was paid at (localhost or 127.0.0.1: the merchant's signed payment request
tells, fetched once). An order paid with
other coins (by another wallet, or a copy of this one) is refused: pay says
it is paid already and when, from the bank's receipt, that nothing was paid
now and the coins are back in the wallet (exit 1; --json: "error":
"paid-with-other-coins", with the receipt's "paid", "deposited_at" and
"payment_hash", and any "revoked_values" among the coins). The wallet keeps
that receipt: paying the order again says the same, sending no coins. If a coin had already
been spent (say, by a copy of this wallet), the bank refuses the payment with
a proof signed by that coin; pay checks the proof, marks the coin spent and
returns the other coins to the wallet. If the bank revoked the denomination
of a coin paid with (its key may have leaked), pay confirms it with the
bank's signed key set, ends the payment, returns the coins to the wallet and
tells you to run "wallet recoup"; running pay again pays with other coins.

For scripts: the exit status is the verdict. 0: paid, or paid already by
this wallet ("already_paid": true). 2: a usage mistake (a flag missing,
malformed or at odds with another; a malformed address or URI, or no
--yes without a terminal, is 1). 1: anything else, the reason on stderr:
not paid by this run, or not known to be. After "error": "pending" the
coins were sent and the payment may have gone through. Running the same
command again is always safe: it never pays twice, and exits 0 if this
wallet paid the order; do that before paying the order another way.
With --json these failures print their "error" kind on stdout:
"pending", "change-pending", "recoup-pending", "paid-with-other-coins",
"double-spend" (a coin was spent already) and "denomination-revoked";
others print nothing there. Later versions may add kinds: treat one you
do not know as not paid (see stderr), never as paid.

With --uri, pay takes the payment request, its summary and the merchant's
address from a payment URI ("blindbank:pay/...", from "merchantd order
create --uri", a link or a QR code) instead of fetching it: one round trip
fewer. It is checked, shown and confirmed just the same. A URI is not
authenticated as a fetch over TLS is, so check the merchant account and
summary shown before you say yes: a forged URI can ask you to pay someone
else. --merchant-ca or --merchant-pin still say how to trust the address.`,
		Example: `wallet pay --merchant 127.0.0.1:7543 --merchant-ca ./shop/tls.crt --order ord-3f9a...
wallet pay --merchant shop.example:7543 --merchant-pin 9a0b...77 --order ord-3f9a... --yes --json
wallet pay --uri blindbank:pay/AAAAG2Js... --merchant-pin 9a0b...77`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&merchantAddr, "merchant", "", "the merchant's public `ADDR` (required without --uri)")
			fs.StringVar(&order, "order", "", "`ORDER_ID` to pay (required without --uri)")
			fs.StringVar(&uri, "uri", "", "pay the payment `URI` blindbank:pay/... (instead of --merchant and --order)")
			fs.BoolVar(&yes, "yes", false, "pay without asking")
			fs.StringVar(&transcript, "transcript", "", "append the protocol messages to `FILE` (JSON lines)")
			mtls.Register(fs)
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			var offer *ecash.PaymentOffer
			if uri != "" {
				if merchantAddr != "" || order != "" {
					return cli.Usagef("--uri names the merchant and the order: give it without --merchant and --order")
				}
				var err error
				if offer, err = ecash.ParsePaymentURI(strings.TrimSpace(uri)); err != nil {
					return fmt.Errorf("bad --uri: %w", err)
				}
				pr, err := offer.Verify()
				if err != nil {
					return fmt.Errorf("bad --uri: %w", err)
				}
				merchantAddr, order = offer.Merchant, pr.OrderID
			}
			if err := cli.CheckAddr("merchant", merchantAddr); err != nil {
				return err
			}
			if order == "" {
				return cli.Usagef("--order ORDER_ID is required (or --uri URI)")
			}
			mcfg, err := mtls.Config(merchantAddr)
			if err != nil {
				return err
			}
			if !yes && !inv.StdinTerminal {
				return errors.New("stdin is not a terminal, so the payment cannot be confirmed: pass --yes to pay without asking")
			}
			mconn, err := transport.Dial(merchantAddr, mcfg, mtls.CertHint())
			if err != nil {
				return err
			}
			defer mconn.Close()
			return withConn(g, transcript, func(w *wallet.Wallet, bconn *grpc.ClientConn) error {
				var shown *wallet.Offer
				confirm := func(o *wallet.Offer) error {
					shown = o
					printOffer(inv.PromptOut(), merchantAddr, o)
					if yes || inv.Agree("Pay?") {
						return nil
					}
					return wallet.ErrDeclined
				}
				// An order this wallet paid is not paid again: the
				// library would answer with the kept receipt, which
				// must not be shown as a new payment.
				rcpt, err := w.PaidReceipt(merchantAddr, order)
				if err != nil {
					return err
				}
				alreadyPaid := rcpt != nil
				switch {
				case alreadyPaid:
				case offer != nil:
					rcpt, err = w.PayOffer(ctx, pb.NewBankClient(bconn), pb.NewMerchantClient(mconn), offer, confirm)
				default:
					rcpt, err = w.Pay(ctx, pb.NewBankClient(bconn), pb.NewMerchantClient(mconn), merchantAddr, order, confirm)
				}
				// Paid under another spelling of the address: the
				// request, once fetched, tells.
				var paid *wallet.AlreadyPaidError
				if errors.As(err, &paid) {
					rcpt, err, alreadyPaid = paid.Receipt, nil, true
				}
				if err != nil {
					return payError(inv, order, err)
				}
				bal, err := w.Balance()
				if err != nil {
					return err
				}
				_, fee, err := w.CoinFees(rcpt.Coins, func(f ecash.Fees) ecash.Amount { return f.Deposit })
				if err != nil {
					return err
				}
				out := struct {
					Order           string `json:"order_id"`
					Paid            string `json:"paid"`
					AlreadyPaid     bool   `json:"already_paid"` // by an earlier run: nothing was paid now
					Fees            string `json:"deposit_fees"`
					Summary         string `json:"summary,omitempty"`
					MerchantAccount uint64 `json:"merchant_account"`
					Coins           int    `json:"coins"`
					DepositedAt     string `json:"deposited_at"`
					PaymentHash     string `json:"payment_hash"`
					Receipt         string `json:"receipt"`
					Fresh           string `json:"fresh"`
				}{
					Order: order, Paid: rcpt.Total.String(), AlreadyPaid: alreadyPaid, Fees: fee.String(), MerchantAccount: rcpt.MerchantAccount, Coins: len(rcpt.Coins),
					DepositedAt: rcpt.DepositedAt.UTC().Format(time.RFC3339Nano), PaymentHash: hex.EncodeToString(rcpt.PaymentHash[:]),
					Receipt: hex.EncodeToString(rcpt.Encode()), Fresh: bal.Fresh.String(),
				}
				if shown != nil {
					out.Summary = shown.Summary
				}
				return inv.Print(out, func(wr io.Writer) {
					if alreadyPaid {
						fmt.Fprintf(wr, "order %s was already paid, %s with %s at %s (the bank's receipt kept by this wallet): nothing was paid now\n",
							cli.Shown(order), rcpt.Total, cli.Plural(len(rcpt.Coins), "coin"), cli.FormatTime(rcpt.DepositedAt))
						fmt.Fprintf(wr, "fresh %s\n", bal.Fresh)
						return
					}
					fmt.Fprintf(wr, "paid %s for order %s with %s: the bank's receipt (%s) verified\n",
						rcpt.Total, cli.Shown(order), cli.Plural(len(rcpt.Coins), "coin"), cli.FormatTime(rcpt.DepositedAt))
					if !fee.IsZero() {
						fmt.Fprintf(wr, "deposit fees %s\n", fee)
					}
					fmt.Fprintf(wr, "fresh %s\n", bal.Fresh)
				})
			})
		},
	}
}

func printOffer(w io.Writer, merchantAddr string, o *wallet.Offer) {
	r := o.Request
	fmt.Fprintf(w, "Payment request (signature verified):\n")
	t := cli.NewTable(w)
	t.Row("  amount:", r.Amount.String())
	if !o.Fee.IsZero() {
		how := "the coins' deposit fees"
		if o.Change {
			how += ", and the swap fee of making change"
		}
		t.Row("  fees:", fmt.Sprintf("%s on top (%s)", o.Fee, how))
	}
	t.Row("  summary:", cli.Shown(o.Summary))
	t.Row("  order:", cli.Shown(r.OrderID))
	t.Row("  merchant address:", merchantAddr)
	t.Row("  merchant account:", r.MerchantAccount)
	t.Row("  merchant key:", hex.EncodeToString(r.MerchantPub))
	t.Row("  expires:", fmt.Sprintf("%s (%s)", cli.FormatTime(r.ExpiresAt), cli.Until(r.ExpiresAt, time.Now())))
	t.Flush()
}

// payError explains a failed payment.
func payError(inv *cli.Invocation, order string, err error) error {
	var ds *ecash.DoubleSpendError
	var revoked *wallet.RevokedError
	var other *wallet.PaidOtherwiseError
	var change *wallet.ChangePendingError
	switch {
	case errors.As(err, &ds):
		coin := ds.Proof.Earlier.Coin.ID()
		if inv.JSON {
			inv.Print(struct {
				Error          string `json:"error"`
				Coin           string `json:"coin"`
				EarlierPayment string `json:"earlier_payment"`
				ProofVerified  bool   `json:"proof_verified"`
			}{"double-spend", hex.EncodeToString(coin[:]), hex.EncodeToString(ds.Proof.Earlier.PaymentHash[:]), true}, nil)
		}
		return fmt.Errorf("payment refused: coin %x was already spent (in payment %x); the bank's double-spend proof, signed by the coin itself, verified. That coin is now marked spent and the other coins are back in the wallet, swapped for new ones as the bank saw them (if that swap could not be made now, 'wallet refresh' makes it); run the same command again to pay with other coins",
			coin[:8], ds.Proof.Earlier.PaymentHash[:8])
	case errors.As(err, &revoked):
		values := revoked.Values()
		if inv.JSON {
			inv.Print(struct {
				Error  string   `json:"error"`
				Values []string `json:"revoked_values"`
			}{"denomination-revoked", values}, nil)
		}
		return fmt.Errorf("payment refused: the bank revoked the denomination of the coins of %s this payment used (its key may have leaked; the bank's master-signed key set says so). Nothing was paid and the payment is ended; the coins are back in the wallet. Run 'wallet recoup' to get the revoked coins' value back, then run the same command again to pay with other coins",
			strings.Join(values, ", "))
	case errors.As(err, &other):
		// Checked before a revocation: the order is paid, which is what
		// the user needs to know first.
		var values []string
		for _, d := range other.Revoked {
			values = append(values, d.Value.String())
		}
		if inv.JSON {
			inv.Print(struct {
				Error       string   `json:"error"`
				Paid        string   `json:"paid"`
				DepositedAt string   `json:"deposited_at"`
				PaymentHash string   `json:"payment_hash"`
				Values      []string `json:"revoked_values,omitempty"`
			}{"paid-with-other-coins", other.Receipt.Total.String(), other.Receipt.DepositedAt.UTC().Format(time.RFC3339Nano), hex.EncodeToString(other.Receipt.PaymentHash[:]), values}, nil)
		}
		msg := fmt.Sprintf("order %s is already paid, %s at %s, but not with these coins (by another wallet, or a copy of this one); the bank's receipt verified. Nothing was paid now and the coins are back in the wallet",
			cli.Shown(order), other.Receipt.Total, cli.FormatTime(other.Receipt.DepositedAt))
		if other.Err == nil {
			// Answered from the receipt kept when an earlier run was
			// refused: this run sent nothing.
			msg = fmt.Sprintf("order %s is already paid, %s at %s, by another wallet or a copy of this one (the bank's receipt, kept when an earlier payment of it was refused). Nothing was paid now and no coins were sent",
				cli.Shown(order), other.Receipt.Total, cli.FormatTime(other.Receipt.DepositedAt))
		}
		if len(values) > 0 {
			msg += fmt.Sprintf("; the bank revoked the denomination of its coins of %s: run 'wallet recoup' to get their value back", strings.Join(values, ", "))
		}
		return errors.New(msg)
	case errors.Is(err, wallet.ErrDeclined):
		return errors.New("payment cancelled; nothing was paid")
	case errors.As(err, &change):
		// Checked before ErrPending, which it wraps: only the swap is
		// pending, and the merchant was sent nothing.
		kind := "change-pending"
		if change.Recoup {
			kind = "recoup-pending"
		}
		if inv.JSON {
			inv.Print(struct {
				Error string `json:"error"`
			}{kind}, nil)
		}
		pending, retry := pendingSwap(change)
		return fmt.Errorf("order %s is not paid: %s; nothing was sent to the merchant. %s and pay (it is never paid twice)", cli.Shown(order), pending, retry)
	case errors.Is(err, wallet.ErrPending):
		if inv.JSON {
			inv.Print(struct {
				Error string `json:"error"`
			}{"pending"}, nil)
		}
		var unchecked *wallet.KeySetUnfetchedError
		if errors.As(err, &unchecked) {
			// Not a bad receipt: the key set to check it with could not
			// be had; the retry checks it again.
			return fmt.Errorf("the payment of order %s was sent and the merchant answered with the bank's receipt, but it could not be checked yet (%v); the payment is saved in the wallet, pending: re-run the same command to finish it (it is never paid twice)", cli.Shown(order), err)
		}
		return fmt.Errorf("the payment of order %s was sent but not confirmed (%v); it is saved in the wallet: re-run the same command to finish it (it is never paid twice)", cli.Shown(order), err)
	case errors.Is(err, wallet.ErrNoExactChange):
		return fmt.Errorf("%w (see 'wallet balance'; a withdrawal brings coins that fit, and 'wallet refresh' frees revealed ones)", err)
	}
	return err
}
