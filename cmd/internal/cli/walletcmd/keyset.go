package walletcmd

import (
	"context"
	"flag"

	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/wallet"
)

// keysetThen is what takes the bank's key set after keyset --drop.
const keysetThen = "the next command that contacts the bank"

// withKeysetHint has every command in cmds name the way out (keyset) when
// it fails on a stored key set that does not decode.
func withKeysetHint(g *globals, cmds []*cli.Command) []*cli.Command {
	for _, c := range cmds {
		if run := c.Run; run != nil {
			c.Run = func(ctx context.Context, inv *cli.Invocation) error {
				return cli.KeySetHint(run(ctx, inv), wallet.ErrCorruptKeySet, "wallet --wallet "+g.dir+" keyset", keysetThen,
					"restore the wallet from a copy or from its seed ('wallet restore')")
			}
		}
	}
	return cmds
}

func keysetCommand(g *globals) *cli.Command {
	var kf cli.KeySetFlags
	return &cli.Command{
		Name:  "keyset",
		Short: "show, or drop, the bank's key set the wallet stores",
		Long: `keyset shows the bank's key set the wallet stores: the one it checks the
bank's keys and signatures against, kept so that the bank cannot have it
take an older set (a replica not yet restarted, a replay) that lists a key
revoked since as valid again. It works offline: the set's SHA-256 and
size, its currency, signing key and issue time, how many denominations it
lists and how many of them are revoked, and the bank's master key the
wallet pinned; or, for a set that no longer decodes (a damaged store), why.

A stored set that does not decode stops every command that needs the
bank's keys ("the stored key set does not decode"), and the wallet takes
no set from the bank over it, since it cannot check the new one against
it. With --drop, keyset deletes it (after asking, or with --yes; with
--sha256 HASH, only if it is still the set of that hash, as keyset showed
it), and nothing else: the coins, the payments pending and the bank's
master key pinned stay. The next command that contacts the bank then takes
the key set the bank serves, checked against the pinned master key, as a
new wallet takes its first. The trade-off: that fetch cannot tell the
bank's current set from an older one it signed, so run "wallet verify-log"
soon after, which takes a newer set from the bank's audit log. A wallet
older than the master key's pin, whose set does not name the master key
readably, drops nothing: restore it from its seed. Restoring the wallet
from a copy or its seed ("wallet restore") is the other way out. Drop a
set that decodes only if you know why (docs/KEYS.md §5): --drop warns
first when it does.

With --json it prints one object: bank_master_key (hex), held (whether a
set is stored), sha256 and size (of the signed set stored), for a set that
decodes currency, signing_key, issued (RFC 3339), denominations and
revoked (how many of them), error (why it does not decode), and dropped
(true after --drop).`,
		Example: `wallet keyset
wallet keyset --json
wallet keyset --drop
wallet keyset --drop --yes --sha256 3f9a...c2`,
		Flags: func(fs *flag.FlagSet) { kf.Register(fs, keysetThen) },
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			w, _, err := open(g, wallet.Options{})
			if err != nil {
				return err
			}
			defer w.Close()
			return cli.RunKeySet(inv, &kf, w.HeldKeySet, w.DropKeySet)
		},
	}
}
