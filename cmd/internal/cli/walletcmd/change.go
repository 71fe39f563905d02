package walletcmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

// withBank opens the wallet (with an optional transcript) and a connection
// to its bank, checks that amount is in the bank's currency, and runs f.
func withBank(g *globals, transcript string, amt ecash.Amount, f func(w *wallet.Wallet, bank pb.BankClient) error) error {
	return withConn(g, transcript, func(w *wallet.Wallet, conn *grpc.ClientConn) error {
		if ks, err := w.KeySet(); err == nil && amt.Currency != ks.Currency {
			return fmt.Errorf("the bank holds %s, not %s", ks.Currency, amt.Currency)
		}
		return f(w, pb.NewBankClient(conn))
	})
}

// withConn opens the wallet (with an optional transcript) and a connection
// to its bank, and runs f.
func withConn(g *globals, transcript string, f func(w *wallet.Wallet, conn *grpc.ClientConn) error) error {
	opts, closeTr, err := transcriptOptions(transcript)
	if err != nil {
		return err
	}
	defer closeTr()
	w, cfg, err := open(g, opts)
	if err != nil {
		return err
	}
	defer w.Close()
	conn, err := dialBank(cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	return f(w, conn)
}

// changeError explains the outcomes of swaps and returns that need the
// user to act.
func changeError(what string, err error) error {
	var change *wallet.ChangePendingError
	switch {
	case errors.As(err, &change):
		// Checked before ErrPending, which it wraps: only the swap making
		// change (for a return, the one caller), or a recoup's re-issue,
		// is pending; nothing was deposited, and Recover settles the swap
		// but makes no return.
		pending, retry := pendingSwap(change)
		return fmt.Errorf("the %s was not made: %s; nothing was deposited. %s and make the %s (nothing is spent twice)", what, pending, retry, what)
	case errors.Is(err, wallet.ErrPending):
		return fmt.Errorf("the bank did not confirm the %s (%v); it is saved in the wallet: run 'wallet recover' to finish it (nothing is spent twice)", what, err)
	case errors.Is(err, ecash.ErrDoubleSpend):
		return fmt.Errorf("%s refused: a coin was already spent, perhaps by a copy of this wallet (%v); that coin is marked spent, the others are kept", what, err)
	}
	return err
}

// pendingSwap says which swap a *wallet.ChangePendingError left pending
// and why, and how to finish it (the caller's words go on with what the
// run then does).
func pendingSwap(change *wallet.ChangePendingError) (what, retry string) {
	if change.Recoup {
		return fmt.Sprintf("a recoup of a revoked coin is pending at the bank (its re-issue as new coins was not answered: %v)", change.Err),
			"The revoked coin is saved in the wallet, pending: run the same command again to finish the recoup"
	}
	return fmt.Sprintf("making change is pending at the bank (a swap of the wallet's coins was not answered: %v)", change.Err),
		"The coin swapped is saved in the wallet, pending: run the same command again to finish the swap"
}

func swapCommand(g *globals) *cli.Command {
	var transcript string
	return &cli.Command{
		Name:  "swap",
		Args:  "AMOUNT",
		NArgs: 1,
		Short: "exchange coins for new ones of the same value (change)",
		Long: `swap gives coins worth AMOUNT to the bank for new coins of the same value,
in denominations chosen so that many amounts can be paid exactly. A payment
or return that the coins cannot make exactly swaps by itself; use this to
renew coins ahead of their denomination's deposit deadline, or to break
large coins.

The coins given up are marked pending and the signed request is saved before
it is sent, so an interrupted swap is finished by "wallet recover" and
never loses value. The bank cannot link the new coins to the old.`,
		Example: `wallet swap EUR:5.12`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&transcript, "transcript", "", "append the protocol messages to `FILE` (JSON lines)")
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			amt, err := cli.ParsePositiveAmount(inv.Args[0])
			if err != nil {
				return err
			}
			return withBank(g, transcript, amt, func(w *wallet.Wallet, bank pb.BankClient) error {
				coins, err := w.Swap(ctx, bank, amt)
				if err != nil {
					return changeError("swap", err)
				}
				bal, err := w.Balance()
				if err != nil {
					return err
				}
				out := struct {
					Swapped string `json:"swapped"`
					Coins   int    `json:"coins"`
					Fresh   string `json:"fresh"`
				}{amt.String(), len(coins), bal.Fresh.String()}
				return inv.Print(out, func(w io.Writer) {
					fmt.Fprintf(w, "swapped %s for %s; fresh %s\n", amt, cli.Plural(len(coins), "new coin"), bal.Fresh)
				})
			})
		},
	}
}

func returnCommand(g *globals) *cli.Command {
	var transcript string
	return &cli.Command{
		Name:  "return",
		Args:  "AMOUNT",
		NArgs: 1,
		Short: "deposit coins back into your own bank account",
		Long: `return deposits coins worth AMOUNT into your own bank account: the wallet
acts as its own merchant, signing the payment request with your account key.
It makes change first if the coins cannot pay AMOUNT exactly, and prints the
bank's receipt and the wallet's fresh total after it.

Like a payment, it is settled only by the bank's word: if the answer is
lost, or its receipt names a signing key your wallet does not know yet and
the bank's key set cannot be fetched to check it, the coins stay pending
and "wallet recover" settles them. If the bank's answer to the swap making
change is lost, nothing is deposited: return says making change is pending
at the bank (exit 1), the coin swapped pending; run the same command again
to finish the swap and return, once ("wallet recover" finishes the swap
only). A recoup's re-issue of a revoked coin left unanswered is finished
first the same way: if the bank still does not answer, return says a
recoup is pending (exit 1), and nothing is deposited.`,
		Example: `wallet return EUR:5.00`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&transcript, "transcript", "", "append the protocol messages to `FILE` (JSON lines)")
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			amt, err := cli.ParsePositiveAmount(inv.Args[0])
			if err != nil {
				return err
			}
			return withBank(g, transcript, amt, func(w *wallet.Wallet, bank pb.BankClient) error {
				acct, err := w.Account()
				if err != nil {
					return err
				}
				rcpt, err := w.Return(ctx, bank, amt)
				if err != nil {
					return changeError("return", err)
				}
				bal, err := w.Balance()
				if err != nil {
					return err
				}
				out := struct {
					Returned string `json:"returned"`
					Account  uint64 `json:"account"`
					Coins    int    `json:"coins"`
					Payment  string `json:"payment_hash"`
					Fresh    string `json:"fresh"`
				}{rcpt.Total.String(), acct, len(rcpt.Coins), rcpt.PaymentHash.String(), bal.Fresh.String()}
				return inv.Print(out, func(w io.Writer) {
					fmt.Fprintf(w, "returned %s in %s to account %d; fresh %s\n", rcpt.Total, cli.Plural(len(rcpt.Coins), "coin"), acct, bal.Fresh)
				})
			})
		},
	}
}

func refreshCommand(g *globals) *cli.Command {
	within := 30 * 24 * time.Hour
	return &cli.Command{
		Name:  "refresh",
		Short: "renew coins whose denomination's deposit deadline is near",
		Long: `refresh fetches the bank's key set and swaps every fresh coin whose
denomination stops being accepted within --within (or whose denomination left
the key set) for coins of the current keys, keeping the value. Run it now and
then (say monthly): a coin past its deposit deadline is worth nothing. It
also swaps every revealed coin (see 'wallet balance'), which may not pay
until it is swapped.

Coins the bank will no longer swap are reported as stranded.`,
		Example: `wallet refresh
wallet refresh --within 90d`,
		Flags: func(fs *flag.FlagSet) {
			cli.DurationVar(fs, &within, "within", within, "renew coins whose deposit deadline is within `DURATION` ("+cli.DurationForms+")")
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			if within < 0 {
				return cli.Usagef("--within must not be negative")
			}
			return withConn(g, "", func(w *wallet.Wallet, conn *grpc.ClientConn) error {
				return refresh(ctx, inv, w, pb.NewBankClient(conn), within)
			})
		},
	}
}

func refresh(ctx context.Context, inv *cli.Invocation, w *wallet.Wallet, bank pb.BankClient, within time.Duration) error {
	res, err := w.RefreshCoins(ctx, bank, within)
	if err != nil {
		return changeError("refresh", err)
	}
	for _, e := range res.Errors {
		inv.Notef("refused: %v", e)
	}
	out := struct {
		Renewed  string `json:"renewed"`
		Coins    int    `json:"coins"`
		Stranded string `json:"stranded"`
	}{res.Renewed.String(), len(res.Coins), res.Stranded.String()}
	return inv.Print(out, func(w io.Writer) {
		fmt.Fprintf(w, "renewed %s as %s; stranded %s\n", res.Renewed, cli.Plural(len(res.Coins), "new coin"), res.Stranded)
	})
}

func recoupCommand(g *globals) *cli.Command {
	return &cli.Command{
		Name:  "recoup",
		Short: "recover the value of coins whose denomination the bank revoked",
		Long: `recoup fetches the bank's key set and, for every coin of a denomination the
bank revoked (its key may have leaked), asks for its value back: a coin you
withdrew is credited to your bank account, a coin that came from a swap is
re-issued as new coins. It reveals to the bank which withdrawal or swap each
such coin came from. Coins the bank already holds spent are marked spent.
An interrupted recoup is finished by running it again or "wallet recover".

A coin from a swap is re-issued as coins of the bank's live keys: if no
live keys make up its value (the smallest value, whose only key was
revoked), that waits until the bank's operator makes a replacement
('bankd keys extend'); run recoup again then.
The exit status is 1 if any coin was not recouped (listed on stderr, and
under "not_recouped" with --json); they stay in the wallet. Each entry of
"not_recouped" has the "coin" (its id, hex), a "message" for people and a
"reason" for scripts, one of:
  no_replacement_key  no live key issues its value yet: recoup again once
                      the bank has made a replacement key
  bad_answer          the bank's answer did not verify (a key set of the
                      bank's that the wallet refuses included)
  refused             the bank refused it for good
  failed              not finished: the wallet failed locally (its store,
                      say, also while taking in the bank's key set), or
                      the bank could not be reached for the key set to
                      check its answer with; run recoup again`,
		Example: `wallet recoup`,
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			return withConn(g, "", func(w *wallet.Wallet, conn *grpc.ClientConn) error {
				return recoup(ctx, inv, w, pb.NewBankClient(conn))
			})
		},
	}
}

func recoup(ctx context.Context, inv *cli.Invocation, w *wallet.Wallet, bank pb.BankClient) error {
	rep, err := w.Recoup(ctx, bank)
	if err != nil {
		return changeError("recoup", err)
	}
	notRecouped := []notRecoupedCoin{}
	noKey := 0
	for _, e := range rep.Errors {
		n := notRecoupedCoin{Reason: recoupReason(e), Message: e.Error()}
		if n.Reason == reasonNoReplacementKey {
			noKey++
		}
		var re *wallet.RecoupError
		if errors.As(e, &re) {
			n.Coin = re.Coin.String()
		}
		notRecouped = append(notRecouped, n)
		inv.Notef("not recouped: %v", e)
	}
	bal, err := w.Balance()
	if err != nil {
		return err
	}
	out := struct {
		Credited    string            `json:"credited_to_account"`
		Reissued    string            `json:"reissued"`
		Coins       int               `json:"new_coins"`
		Spent       int               `json:"already_spent"`
		NotRecouped []notRecoupedCoin `json:"not_recouped"`
		Fresh       string            `json:"fresh"`
	}{rep.Credited.String(), rep.Reissued.String(), len(rep.Coins), rep.Spent, notRecouped, bal.Fresh.String()}
	if err := inv.Print(out, func(w io.Writer) {
		fmt.Fprintf(w, "recouped: %s credited to your account, %s re-issued as %s; %d already spent; fresh %s\n",
			out.Credited, out.Reissued, cli.Plural(out.Coins, "coin"), out.Spent, out.Fresh)
	}); err != nil {
		return err
	}
	// Some coins kept their value in the wallet but were not recouped: say
	// so in the exit code, as a partial failure.
	switch {
	case len(rep.Errors) == 0:
		return nil
	case noKey == len(rep.Errors):
		return fmt.Errorf("%s not recouped: the bank has no key issuing their value yet, to re-issue them as (they came from swaps). They stay in the wallet; run 'wallet recoup' again once the bank has made a replacement key (its operator runs 'bankd keys extend', KEYS.md §7)", cli.Plural(len(rep.Errors), "coin"))
	case noKey > 0:
		return fmt.Errorf("%s not recouped (see above); %d of them wait for the bank to make a replacement key ('bankd keys extend'). They stay in the wallet; run 'wallet recoup' again later", cli.Plural(len(rep.Errors), "coin"), noKey)
	}
	return fmt.Errorf("%s not recouped (see above); they stay in the wallet", cli.Plural(len(rep.Errors), "coin"))
}

// notRecoupedCoin is a coin 'wallet recoup --json' lists under
// not_recouped: Reason is one of the reason* codes, stable for scripts;
// Message says it for people and may change.
type notRecoupedCoin struct {
	Coin    string `json:"coin"` // the coin's id, hex
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// Why a coin was not recouped: the fixed set recoup's help and
// docs/OPERATIONS.md list.
const (
	reasonNoReplacementKey = "no_replacement_key" // no live key issues its value yet: recoup again after 'bankd keys extend'
	reasonBadAnswer        = "bad_answer"         // the bank's answer did not verify (kept as a dispute where it signed coins)
	reasonRefused          = "refused"            // the bank refused it for good
	reasonFailed           = "failed"             // not finished: the wallet failed locally (its store, say), or could not fetch the bank's key set to check its answer
)

// recoupReason classifies a coin's recoup error into its reason code.
func recoupReason(err error) string {
	var unfetched *wallet.KeySetUnfetchedError
	switch {
	case errors.Is(err, wallet.ErrNoReplacementKey):
		return reasonNoReplacementKey
	case errors.As(err, &unfetched):
		// The receipt's signer is not in the key set held, and the bank
		// was not reached for its current one, or the wallet failed
		// taking it in (its store): the answer may be good.
		return reasonFailed
	case errors.Is(err, wallet.ErrBadAnswer), errors.Is(err, ecash.ErrBadSignature):
		return reasonBadAnswer
	}
	// Recoup returns an answer that may change (a lost one, say) as
	// ErrPending, not per coin: a bank status here is a final refusal.
	if st, ok := status.FromError(err); ok && st.Code() != codes.OK {
		return reasonRefused
	}
	return reasonFailed
}

func refundsCommand(g *globals) *cli.Command {
	var transcript string
	return &cli.Command{
		Name:  "refunds",
		Short: "collect merchants' refunds into fresh coins",
		Long: `refunds asks the bank, for each payment the wallet made, whether the
merchant refunded any of it ("merchantd refund"). A refund gives value back
to the coins that paid; the wallet swaps that value for fresh coins and
prints what it collected and the wallet's fresh total. Asking about one payment's
coins tells the bank nothing it did not know: it saw them paid together.

Like every swap, it is persisted before it is sent: if the answer is lost,
running refunds (or "wallet recover") again finishes it.`,
		Example: `wallet refunds`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&transcript, "transcript", "", "append the protocol messages to `FILE` (JSON lines)")
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			return withConn(g, transcript, func(w *wallet.Wallet, conn *grpc.ClientConn) error {
				r, err := w.CollectRefunds(ctx, pb.NewBankClient(conn))
				if err != nil {
					return changeError("refund collection", err)
				}
				bal, err := w.Balance()
				if err != nil {
					return err
				}
				out := struct {
					Payments  int    `json:"payments"`
					Coins     int    `json:"coins"`
					Collected string `json:"collected"`
					Fresh     string `json:"fresh"`
				}{r.Payments, r.Coins, r.Value.String(), bal.Fresh.String()}
				return inv.Print(out, func(w io.Writer) {
					if r.Payments == 0 {
						fmt.Fprintf(w, "no refunds to collect; fresh %s\n", bal.Fresh)
						return
					}
					fmt.Fprintf(w, "collected %s refunded to %s of %s; fresh %s\n", r.Value, cli.Plural(r.Coins, "coin"), cli.Plural(r.Payments, "payment"), bal.Fresh)
				})
			})
		},
	}
}
