package cli

import (
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/blindbank/blindbank/ecash"
)

// The "keyset" commands of merchantd and wallet: they show the bank's key
// set a merchant or a wallet holds (ecash.HeldKeySet), or drop it so that
// the next fetch takes the bank's afresh, checked against the pinned
// master key only.

// KeySetHint adds to err, if it is corrupt (the holder's error for a key
// set held that does not decode), how to see the set and drop it: show is
// the command that shows it ("merchantd keyset --data DIR"), then what
// takes the bank's set after a drop ("the next start"), or the other way
// out ("restore the data directory from a backup").
func KeySetHint(err, corrupt error, show, then, or string) error {
	if !errors.Is(err, corrupt) {
		return err
	}
	return fmt.Errorf("%w; \"%s\" shows it, and \"%s --drop\" drops it so that %s takes the bank's (read \"%s --help\" first), or %s", err, show, show, then, show, or)
}

// KeySetFlags are the flags of a keyset command.
type KeySetFlags struct {
	Drop, Yes bool
	SHA256    string // with Drop: the hash of the set to drop; "": the one shown
	then      string
}

// Register registers the flags; then is what takes the bank's set after
// a drop ("the next start").
func (f *KeySetFlags) Register(fs *flag.FlagSet, then string) {
	f.then = then
	fs.BoolVar(&f.Drop, "drop", false, "delete the key set held, so that "+then+" takes the bank's")
	fs.BoolVar(&f.Yes, "yes", false, "with --drop, drop without asking")
	fs.StringVar(&f.SHA256, "sha256", "", "with --drop, drop the key set held only if its SHA-256 is `HASH` (as keyset shows it)")
}

// KeySetOut is a key set held as keyset prints it; --json prints these
// fields.
type KeySetOut struct {
	MasterKey  string `json:"bank_master_key,omitempty"` // pinned, hex
	Held       bool   `json:"held"`
	SHA256     string `json:"sha256,omitempty"` // of the signed key set stored
	Size       int    `json:"size,omitempty"`   // its bytes
	Currency   string `json:"currency,omitempty"`
	SigningKey string `json:"signing_key,omitempty"`
	Issued     string `json:"issued,omitempty"`
	Denoms     int    `json:"denominations,omitempty"`
	Revoked    *int   `json:"revoked,omitempty"` // denominations revoked; set if it decodes
	Error      string `json:"error,omitempty"`   // why it does not decode
	Dropped    bool   `json:"dropped,omitempty"`
}

// KeySetJSON is h as keyset prints it.
func KeySetJSON(h *ecash.HeldKeySet) KeySetOut {
	out := KeySetOut{MasterKey: hex.EncodeToString(h.Master), Held: h.Signed != nil}
	if h.Signed == nil {
		return out
	}
	out.SHA256, out.Size = h.Hash.String(), len(h.Signed)
	if h.Err != nil {
		out.Error = h.Err.Error()
	}
	if ks := h.KeySet; ks != nil {
		out.Currency, out.SigningKey, out.Denoms = ks.Currency, hex.EncodeToString(ks.SigningPub), len(ks.Denominations)
		out.Issued = ks.IssuedAt.UTC().Format(time.RFC3339)
		revoked := len(ks.Revoked())
		out.Revoked = &revoked
	}
	return out
}

func (out KeySetOut) print(w io.Writer, then string) {
	t := NewTable(w)
	if out.MasterKey != "" {
		t.Row("bank master key:", out.MasterKey+" (pinned)")
	}
	switch {
	case !out.Held:
		t.Row("key set:", "none held ("+then+" takes the bank's)")
	case out.Error != "":
		t.Row("key set:", fmt.Sprintf("%s, %d bytes: DOES NOT DECODE", out.SHA256, out.Size))
		t.Row("error:", out.Error)
	default:
		t.Row("key set:", fmt.Sprintf("%s, %d bytes", out.SHA256, out.Size))
		t.Row("currency:", out.Currency)
		t.Row("signing key:", out.SigningKey)
		t.Row("issued:", out.Issued)
		t.Row("denominations:", fmt.Sprintf("%d, %d revoked", out.Denoms, *out.Revoked))
	}
	t.Flush()
}

// RunKeySet runs a keyset command with flags f: it prints the key set
// read returns or, with --drop, prints it (with a warning if it decodes),
// asks (unless --yes) and has
// drop delete it, given its hash (so that drop deletes only the set shown,
// or the one --sha256 names).
func RunKeySet(inv *Invocation, f *KeySetFlags, read func() (*ecash.HeldKeySet, error), drop func(shown ecash.Hash) (*ecash.HeldKeySet, error)) error {
	var named ecash.Hash
	switch b, err := hex.DecodeString(f.SHA256); {
	case (f.Yes || f.SHA256 != "") && !f.Drop:
		return Usagef("--yes and --sha256 go with --drop")
	case err != nil || f.SHA256 != "" && len(b) != len(named):
		return Usagef("--sha256 %q is not a SHA-256 (64 hex digits, as keyset shows it)", f.SHA256)
	default:
		copy(named[:], b)
	}
	held, err := read()
	if err != nil {
		return err
	}
	out := KeySetJSON(held)
	if !f.Drop {
		return inv.Print(out, func(w io.Writer) { out.print(w, f.then) })
	}
	switch {
	case held.Signed == nil:
		return fmt.Errorf("no key set held: nothing to drop (%s takes the bank's)", f.then)
	case f.SHA256 != "" && held.Hash != named:
		return fmt.Errorf("the key set held is %s, not %s: nothing dropped", held.Hash, named)
	}
	out.print(inv.PromptOut(), f.then)
	if held.Err == nil {
		// Not damaged: the drop gives up the check of the next set
		// against it (ecash.KeySet.Follows), for nothing it needs.
		fmt.Fprintf(inv.PromptOut(), "WARNING: this key set decodes: it is not damaged. Dropping it gives up what keeps the bank (a replica not yet restarted, a replay) from having %s take an older set its master key signed, which may list a key revoked since as valid again. Drop it only if you know why.\n", f.then)
	}
	if !f.Yes && !inv.Agree("Drop this key set, so that "+f.then+" takes the one the bank serves?") {
		return errors.New("nothing dropped")
	}
	dropped, err := drop(held.Hash)
	if err != nil {
		return err
	}
	out = KeySetJSON(dropped)
	out.Dropped = true
	return inv.Print(out, func(w io.Writer) {
		fmt.Fprintf(w, "key set %s… dropped; %s takes the bank's\n", out.SHA256[:16], f.then)
	})
}
