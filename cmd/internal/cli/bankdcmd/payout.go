package bankdcmd

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

func owedCommand(a *cli.AdminFlags) *cli.Command {
	var period cli.Period
	return &cli.Command{
		Name:  "owed",
		Short: "list what each merchant is owed",
		Long: `owed lists every merchant account with money owed or with activity in the
period [--from, --to): its balance at --from (OPENING), what deposits and
approved checks credited in the period, what was paid out in it, every other
posting in it (OTHER: refunds and their fees, signed), its balance at --to
(CLOSING), and the balance owed now (OWED). Each row adds up: OPENING +
CREDITED - PAID OUT + OTHER = CLOSING; OWED differs from CLOSING by what was
posted since --to. Pay it with "bankd admin payout".`,
		Example: `bankd admin --data ./bank owed --from 2026-11-01 --to 2026-12-01
bankd admin --data ./bank owed --json`,
		Flags: period.Register,
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			from, to, err := period.Resolve(time.Now())
			if err != nil {
				return err
			}
			return adminCall(ctx, inv, a, func(ctx context.Context, c pb.BankAdminClient) error {
				resp, err := c.ListOwed(ctx, &pb.ListOwedRequest{FromUnixMs: from.UnixMilli(), ToUnixMs: to.UnixMilli()})
				if err != nil {
					return fmt.Errorf("listing what merchants are owed: %w", err)
				}
				type row struct {
					Account  uint64 `json:"account"`
					Name     string `json:"name"`
					Opening  string `json:"opening"`
					Credited string `json:"credited"`
					PaidOut  string `json:"paid_out"`
					Other    string `json:"other"`
					Closing  string `json:"closing"`
					Owed     string `json:"owed"`
				}
				out := struct {
					From      string `json:"from"`
					To        string `json:"to"`
					Merchants []row  `json:"merchants"`
				}{From: from.UTC().Format(time.RFC3339), To: to.UTC().Format(time.RFC3339), Merchants: []row{}}
				for _, m := range resp.Merchants {
					out.Merchants = append(out.Merchants, row{m.Account, m.Name, m.Opening, m.Credited, m.PaidOut, m.Other, m.Closing, m.Balance})
				}
				return inv.Print(out, func(w io.Writer) {
					fmt.Fprintf(w, "period %s to %s\n", out.From, out.To)
					tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "ACCOUNT\tNAME\tOPENING\tCREDITED\tPAID OUT\tOTHER\tCLOSING\tOWED")
					for _, r := range out.Merchants {
						fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Account, ecash.ShownText(r.Name, bank.MaxNameLen), r.Opening, r.Credited, r.PaidOut, r.Other, r.Closing, r.Owed)
					}
					tw.Flush()
				})
			})
		},
	}
}

func payoutCommand(a *cli.AdminFlags) *cli.Command {
	var (
		account, amount, memo, reference, statementOut string
		period                                         cli.Period
	)
	return &cli.Command{
		Name:  "payout",
		Short: "pay money out of an account and write its signed statement",
		Long: `payout records that AMOUNT left the account to the outside (the transfer to
a merchant's own bank, made by you): the account is debited, never beyond
its balance, and the payout is in the audit log. --reference makes a retry
safe: a payout with a reference already used pays nothing more.

It writes the bank's signed statement of the account over [--from, --to) to
--statement FILE, for the merchant: "merchantd settlement --data DIR FILE"
checks it against the merchant's own receipts. A period the bank cannot
make a statement for (more than 1024 postings in it, say) is refused before
anything is paid. If the statement still fails once the payout is recorded,
the payout stands: the command says so, exits 0, writes no statement and
prints the command that makes it (the same reference, which pays nothing
more, with a later --from).`,
		Example: `bankd admin --data ./bank payout --account 1001 --amount EUR:350.00 --reference wire-2026-11 --from 2026-11-01 --to 2026-12-01 --statement shop-2026-11.stmt`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&account, "account", "", "account `ID` (required)")
			fs.StringVar(&amount, "amount", "", "`AMOUNT` paid out, e.g. EUR:350.00 (required)")
			fs.StringVar(&memo, "memo", "", "`TEXT` recorded with the posting")
			fs.StringVar(&reference, "reference", "", "idempotency `KEY` (required): e.g. your transfer's id")
			fs.StringVar(&statementOut, "statement", "", "write the signed statement to `FILE` (must not exist)")
			period.Register(fs)
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			if account == "" || amount == "" || reference == "" {
				return cli.Usagef("--account, --amount and --reference are required")
			}
			id, err := cli.ParseID("--account", account)
			if err != nil {
				return err
			}
			amt, err := cli.ParsePositiveAmount(amount)
			if err != nil {
				return err
			}
			from, to, err := period.Resolve(time.Now())
			if err != nil {
				return err
			}
			toMs := to.UnixMilli()
			if !period.EndGiven() {
				toMs = 0 // the bank's now, after the payout, so the statement shows it
			}
			if statementOut != "" {
				if _, err := os.Stat(statementOut); err == nil {
					return fmt.Errorf("%s exists; refusing to overwrite it", statementOut)
				}
			}
			return adminCall(ctx, inv, a, func(ctx context.Context, c pb.BankAdminClient) error {
				resp, err := c.Payout(ctx, &pb.PayoutRequest{Account: id, Amount: amt.String(), Memo: memo, Reference: reference,
					FromUnixMs: from.UnixMilli(), ToUnixMs: toMs})
				if err != nil {
					return fmt.Errorf("paying out of account %d: %w", id, err)
				}
				written := ""
				if statementOut != "" && resp.StatementError == "" {
					if err := bank.WriteFileAtomic(statementOut, resp.Statement, 0o644); err != nil {
						return err
					}
					written = statementOut
				}
				out := struct {
					Account        uint64 `json:"account"`
					PaidOut        string `json:"paid_out"`
					Balance        string `json:"balance"`
					Statement      string `json:"statement_file,omitempty"`
					StatementError string `json:"statement_error,omitempty"`
				}{id, amt.String(), resp.Balance, written, resp.StatementError}
				if resp.StatementError != "" {
					// Not an error: the money moved, and a retry with a new
					// reference would pay twice. Only the statement is missing.
					file := statementOut
					if file == "" {
						file = "FILE"
					}
					inv.Notef("warning: the payout is recorded, but its statement could not be made: %s\n"+
						"Make the statement by running the payout again with the same reference, which pays nothing more\n"+
						"(with a shorter period if it had too many postings), and your admin flags:\n"+
						"  bankd admin payout --account %d --amount %s --reference %q --from %s%s --statement %s",
						resp.StatementError, id, amt, reference, from.UTC().Format(time.RFC3339), toFlag(period, to), file)
				}
				return inv.Print(out, func(w io.Writer) {
					fmt.Fprintf(w, "paid out %s from account %d; balance %s\n", amt, id, resp.Balance)
					if written != "" {
						fmt.Fprintf(w, "signed statement written to %s\n", written)
					}
				})
			})
		},
	}
}

// toFlag is the --to of a command repeating a period: none if it was left
// to default to the bank's now.
func toFlag(p cli.Period, to time.Time) string {
	if !p.EndGiven() {
		return ""
	}
	return " --to " + to.UTC().Format(time.RFC3339)
}
