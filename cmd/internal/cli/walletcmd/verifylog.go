package walletcmd

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"

	"google.golang.org/grpc"

	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/cmd/internal/cli"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

func verifyLogCommand(g *globals) *cli.Command {
	var cf cli.CheckpointOut
	return &cli.Command{
		Name:  "verify-log",
		Short: "check that the bank's audit log records your withdrawals, payments and swaps",
		Long: `verify-log fetches the bank's signed audit-log checkpoint, checks that it is
consistent with the newest one this wallet has seen (a bank that shows
different histories to different people is caught), and for every
withdrawal, payment, return, swap and payment order settled since the last
run, verifies the log entry's inclusion proof and that it names exactly
your coins (a withdrawal's: that it debits your account what you signed
for, for coins of the denominations you asked for). One the log lacks that
the bank answered after its log began (judged by your request's time, less
the clock skew, when the bank's answer is dated earlier or not at all) is a
mismatch. It also checks that
the log holds every key set the bank served this wallet: a bank logs its
key set before serving it, so one the log lacks was made for few wallets,
whose coins the bank could then recognise.

With --checkpoint-out FILE it writes the signed checkpoint the wallet now
holds, exactly as the bank signed it, for an auditor: "audit log --from
FILE" checks that the log the bank serves the auditor extends it, so a bank
showing the wallet another history is caught, and checks its keyset line
against the log. It is written after the checks, also when the log does not
match (the checkpoint is then evidence); an existing FILE is kept unless
--overwrite.

It reports the entries verified and those waiting: not in the log yet, or
logged after the checkpoint, checked at a later run; and whether the wallet
adopted a newer key set the checkpoint names than the bank served (logged,
and following the one held). With --json: log_size, root (hex), verified,
waiting, checkpoint_file and adopted_key_set, as merchantd verify-log
prints them (docs/AUDIT.md).

A fork is printed with both signed checkpoints: publish them, they prove
the bank misbehaved. Exit status 1 on a fork or a mismatch.`,
		Example: `wallet verify-log
wallet verify-log --json
wallet verify-log --checkpoint-out alice.checkpoint
audit log --bank bank.example:7443 --ca bank.crt --from alice.checkpoint`,
		Flags: func(fs *flag.FlagSet) { cf.Register(fs, "wallet") },
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			if err := cf.Check(); err != nil {
				return err
			}
			return withConn(g, "", func(w *wallet.Wallet, conn *grpc.ClientConn) error {
				return verifyLog(ctx, inv, w, conn, cf)
			})
		},
	}
}

func verifyLog(ctx context.Context, inv *cli.Invocation, w *wallet.Wallet, conn *grpc.ClientConn, cf cli.CheckpointOut) error {
	rep, err := w.VerifyLog(ctx, pb.NewBankClient(conn), pb.NewAuditLogClient(conn))
	// The checkpoint held: after a mismatch too (a false keyset line is
	// for the auditor to confirm), never after a fork (it prints both).
	if cf.Path != "" && (err == nil || errors.Is(err, wallet.ErrLogMismatch)) {
		switch {
		case rep != nil && rep.Signed != nil:
			if werr := cf.Write(rep.Signed); werr != nil {
				return errors.Join(err, werr)
			}
			if err != nil {
				inv.Notef("the signed checkpoint is in %s", cf.Path)
			}
		case err == nil:
			return errors.New("--checkpoint-out: the wallet holds no checkpoint")
		default:
			inv.Notef("no checkpoint written to %s: the bank's was not accepted", cf.Path)
		}
	}
	var fork *auditlog.ForkError
	if errors.As(err, &fork) {
		return fmt.Errorf("the bank's log is FORKED: it signed two inconsistent checkpoints (%v)\n--- older\n%s--- newer\n%s", fork.Reason,
			base64.StdEncoding.EncodeToString(fork.Older)+"\n", base64.StdEncoding.EncodeToString(fork.Newer)+"\n")
	}
	if err != nil {
		return err
	}
	// The root in hex, as all our JSON (tlog.Hash.String is base64).
	out := cli.LogCheck{LogSize: rep.Checkpoint.Size, Root: hex.EncodeToString(rep.Checkpoint.Root[:]),
		Verified: rep.Verified, Waiting: rep.Waiting, CheckpointFile: cf.Path, AdoptedKeySet: rep.AdoptedKeySet}
	return inv.Print(out, func(w io.Writer) {
		fmt.Fprintf(w, "log of %s, consistent with every checkpoint seen; %s verified, %d waiting\n",
			cli.PluralOf(int(rep.Checkpoint.Size), "entry", "entries"), cli.PluralOf(rep.Verified, "entry", "entries"), rep.Waiting)
		if rep.AdoptedKeySet {
			fmt.Fprintln(w, cli.AdoptedKeySetNote)
		}
		if cf.Path != "" {
			fmt.Fprintf(w, "signed checkpoint written to %s\n", cf.Path)
		}
	})
}
