package bankdcmd

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"

	"google.golang.org/grpc"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/cmd/internal/config"
	"github.com/blindbank/blindbank/cmd/internal/transport"
)

// SignerInfoFile is written to the signer's data directory once it listens
// (removed on exit), like addresses.json for bankd serve.
const SignerInfoFile = "signer.json"

func signerCommand() *cli.Command {
	var (
		fl     config.Flags
		logf   cli.LogFlags
		socket string
		group  string
	)
	return &cli.Command{
		Name:  "signer",
		Short: "hold the denomination private keys in a process of their own",
		Long: `signer loads DIR/keys.json (with --key-passphrase-file if it is encrypted, as
'bankd serve' does) and answers denomination signing requests on the unix
socket --socket, for 'bankd serve --signer unix:///PATH'. bankd then signs
every coin through it and refuses to start if the signer's denominations
differ from its own: after 'bankd keys extend', 'prune' or 'revoke', give
both the new key file and restart both.

The socket is created with mode 0600 (owner only), or 0660 and the group
--socket-group, so that bankd can run as another user that cannot read the
signer's key file: that is what keeps the denomination keys from a
compromise of the network-facing process. An existing socket nothing
listens on is replaced; any other file at that path is refused.

The signer records every CS nonce it answers in DIR/signer-nonces.log and
never answers a second, different challenge for one: that would reveal
the CS key, even to a compromised bankd. Keep that file with the key file.

Once listening it writes DIR/signer.json (removed on exit). SIGINT or
SIGTERM stops it gracefully: calls in flight finish.`,
		Example: `bankd signer --data /var/lib/blindbank-signer --socket /run/blindbank/signer.sock --key-passphrase-file /run/credentials/signer/passphrase
bankd serve --data /var/lib/blindbank --signer unix:///run/blindbank/signer.sock`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&fl.Config, "config", "", "read data and key_passphrase_file from the JSON config `FILE`")
			fs.StringVar(&fl.Data, "data", "", "data `DIR` holding keys.json (or $"+config.EnvData+")")
			fs.StringVar(&fl.KeyPassphraseFile, "key-passphrase-file", "", "`FILE` holding the passphrase of DIR/keys.json (or $"+config.EnvKeyPassphraseFile+")")
			fs.StringVar(&socket, "socket", "", "unix socket `PATH` to listen on")
			fs.StringVar(&group, "socket-group", "", "give the socket to `GROUP` with mode 0660 (bankd running as another user in that group); default: mode 0600")
			logf.Register(fs)
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			if socket == "" {
				return cli.Usagef("--socket PATH is required")
			}
			abs, err := filepath.Abs(socket)
			if err != nil {
				return err
			}
			gid := -1
			if group != "" {
				g, err := user.LookupGroup(group)
				if err != nil {
					return cli.Usagef("--socket-group: %v", err)
				}
				if gid, err = strconv.Atoi(g.Gid); err != nil {
					return err
				}
			}
			log, err := logf.Logger(inv.Stderr)
			if err != nil {
				return err
			}
			// Everything this process creates is private, the socket first.
			if err := makeFilesPrivate(); err != nil {
				return err
			}
			k, path, _, info, err := loadKeys(inv, &fl)
			if err != nil {
				return err
			}
			dir := filepath.Dir(path)
			srv, err := bank.NewSignerServer(k, filepath.Join(dir, bank.SignerNoncesFile), log)
			if err != nil {
				return err
			}
			defer srv.Close()
			ln, err := bank.ListenSignerSocket(abs)
			if err != nil {
				return err
			}
			defer os.Remove(abs)
			if gid >= 0 {
				if err := os.Chown(abs, -1, gid); err != nil {
					ln.Close()
					return err
				}
				if err := os.Chmod(abs, 0o660); err != nil {
					ln.Close()
					return err
				}
			}
			g := transport.NewSignerServer()
			srv.Register(g)
			done := make(chan error, 1)
			go func() { done <- g.Serve(ln) }()

			res := struct {
				Socket        string `json:"socket"`
				Signer        string `json:"signer"` // what bankd serve --signer takes
				KeysFile      string `json:"keys_file"`
				KeysEncrypted bool   `json:"keys_encrypted"`
				Currency      string `json:"currency"`
				BankID        string `json:"bank_id"`
				Denominations int    `json:"denominations"`
				PID           int    `json:"pid"`
			}{abs, "unix://" + abs, path, info.Encrypted, k.Currency, k.BankID().String(), len(k.Denoms), os.Getpid()}
			b, _ := json.MarshalIndent(res, "", "  ")
			infoPath := filepath.Join(dir, SignerInfoFile)
			if err := bank.WriteFileAtomic(infoPath, append(b, '\n'), 0o600); err != nil {
				g.Stop()
				return err
			}
			defer os.Remove(infoPath)
			inv.Print(res, func(w io.Writer) {
				t := cli.NewTable(w)
				t.Row("signer socket:", res.Socket)
				t.Row("bankd serve:", "--signer "+res.Signer)
				t.Row("keys:", fmt.Sprintf("%s (%s, %s, %s)", path, k.Currency, cli.Plural(len(k.Denoms), "denomination"), encryptedText(info)))
				t.Row("bank id:", res.BankID)
				t.Flush()
			})
			log.Info("signer serving", "socket", abs, "denominations", len(k.Denoms), "keys_encrypted", info.Encrypted)
			select {
			case err := <-done:
				if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
					log.Error("signer listener failed", "err", err)
					return err
				}
			case <-ctx.Done():
				log.Info("shutting down")
				g.GracefulStop()
			}
			log.Info("stopped")
			return nil
		},
	}
}
