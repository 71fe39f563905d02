package walletcmd

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"

	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/cmd/internal/cli"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

func verifyLogCommand(g *globals) *cli.Command {
	return &cli.Command{
		Name:  "verify-log",
		Short: "check that the bank's audit log records your payments and swaps",
		Long: `verify-log fetches the bank's signed audit-log checkpoint, checks that it is
consistent with the newest one this wallet has seen (a bank that shows
different histories to different people is caught), and for every payment,
return and swap settled since the last check, verifies the log entry's
inclusion proof and that it names exactly your coins. It also checks that
the log holds every key set the bank served this wallet: a bank logs its
key set before serving it, so one the log lacks was made for few wallets,
whose coins the bank could then recognise.

A fork is printed with both signed checkpoints: publish them, they prove
the bank misbehaved. Exit status 1 on a fork or a mismatch.`,
		Example: `wallet verify-log
wallet verify-log --json`,
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			return withConn(g, "", func(w *wallet.Wallet, conn *grpc.ClientConn) error {
				return verifyLog(ctx, inv, w, conn)
			})
		},
	}
}

func verifyLog(ctx context.Context, inv *cli.Invocation, w *wallet.Wallet, conn *grpc.ClientConn) error {
	rep, err := w.VerifyLog(ctx, pb.NewBankClient(conn), pb.NewAuditLogClient(conn))
	var fork *auditlog.ForkError
	if errors.As(err, &fork) {
		return fmt.Errorf("the bank's log is FORKED: it signed two inconsistent checkpoints (%v)\n--- older\n%s--- newer\n%s", fork.Reason,
			base64.StdEncoding.EncodeToString(fork.Older)+"\n", base64.StdEncoding.EncodeToString(fork.Newer)+"\n")
	}
	if err != nil {
		return err
	}
	out := struct {
		LogSize  int64  `json:"log_size"`
		Root     string `json:"root"`
		Verified int    `json:"verified"`
		Waiting  int    `json:"waiting"`
	}{rep.Checkpoint.Size, rep.Checkpoint.Root.String(), rep.Verified, rep.Waiting}
	return inv.Print(out, func(w io.Writer) {
		fmt.Fprintf(w, "log of %d entries, consistent with every checkpoint seen; %d entries verified, %d waiting\n",
			rep.Checkpoint.Size, rep.Verified, rep.Waiting)
	})
}
