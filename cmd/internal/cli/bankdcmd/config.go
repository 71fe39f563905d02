package bankdcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/cmd/internal/config"
)

// precedence is the help text on where settings come from.
const precedence = `Settings come from, in order of precedence: flags; the environment
variables ` + config.EnvData + `, ` + config.EnvStore + `, ` + config.EnvListen + `,
` + config.EnvAdminListen + ` and ` + config.EnvKeyPassphraseFile + ` (when set and not
empty); the JSON config file
given by --config (see 'bankd config --help'); the built-in defaults.`

// settings resolves a command's configuration: its flags, the environment
// and the --config file.
func settings(inv *cli.Invocation, fl *config.Flags) (*config.Bank, error) {
	in := config.Input{Getenv: os.Getenv, Flags: fl, IsSet: inv.IsSet}
	if fl.Config != "" {
		f, err := config.Load(fl.Config)
		if err != nil {
			return nil, err
		}
		in.File, in.FilePath = f, fl.Config
	}
	return config.Resolve(in)
}

// dataDir is the configured data directory, required.
func dataDir(cfg *config.Bank) (string, error) {
	if cfg.Data == "" {
		return "", cli.Usagef("--data DIR is required (or $%s, or data in the --config file)", config.EnvData)
	}
	return cfg.Data, nil
}

// keyOptions reads the configured key passphrase, if any.
func keyOptions(cfg *config.Bank) (bank.KeyFileOptions, error) {
	if cfg.KeyPassphraseFile == "" {
		return bank.KeyFileOptions{}, nil
	}
	pass, err := config.ReadPassphrase(cfg.KeyPassphraseFile)
	if err != nil {
		return bank.KeyFileOptions{}, err
	}
	return bank.KeyFileOptions{Passphrase: pass}, nil
}

// keyFileError explains how to give a missing passphrase.
func keyFileError(err error) error {
	if errors.Is(err, bank.ErrKeysEncrypted) {
		return fmt.Errorf("%w: give --key-passphrase-file FILE (or $%s, or key_passphrase_file in the --config file)", err, config.EnvKeyPassphraseFile)
	}
	return err
}

func configCommand() *cli.Command {
	return &cli.Command{
		Name:  "config",
		Short: "check a configuration file",
		Long: `A bankd configuration file is one JSON object. Every field may be left out;
its zero value means the default shown. Unknown fields are errors.

  {
    "data": "/var/lib/blindbank",      data directory; no default: required here,
                                       by --data or $` + config.EnvData + `
    "listen": "127.0.0.1:7443",        public gRPC address
    "admin_listen": "127.0.0.1:7444",  admin address; loopback only, unless
                                       admin_client_ca_file is set
    "plaintext": false,                no TLS on the public listener; loopback only
    "key_passphrase_file": "",         file holding the passphrase of keys.json;
                                       none: keys.json in clear (bankd warns)
    "log_format": "text",              text or json
    "log_level": "info",               debug, info, warn or error
    "store": "",                       none: Pebble in DATA/ledger; or a
                                       postgres:// URL shared by replicas
    "cache_size": "192MiB",            block cache of the Pebble store (64MiB of
                                       it for memtables): about 12 bytes a
                                       spent coin keeps its filters and
                                       indexes cached (not with PostgreSQL)
    "tls_cert_file": "",               the listeners' certificate and key (PEM);
    "tls_key_file": "",                none: DATA/tls.crt and DATA/tls.key,
                                       self-signed, made if missing
    "client_ca_file": "",              CAs of client certificates on the public
                                       listener; none: no client certificates
    "client_auth": "",                 none, merchants (deposits and checks) or
                                       all; none given: merchants with a
                                       client_ca_file, else none
    "admin_client_ca_file": "",        CAs of admin client certificates; if set
                                       the admin listener serves TLS and needs
                                       one besides the token
    "signer": "",                      none: bankd signs with its own keys; or
                                       unix:///PATH of a "bankd signer"
    "rate_limit_per_peer": "500",      calls a second from one peer address
                                       (bursts of twice that), or "off";
                                       behind a proxy all share its address
    "rate_limit_per_account": "100",   withdrawals, payment orders and
                                       statements a second per account, or "off"
    "rate_limit_refusals_per_account": "1",
                                       refused withdraw requests recorded a
                                       second per account (bursts of 20), or
                                       "off"; over it: "slow down", retried
    "calls_per_peer": "256",           calls one peer address may have in
                                       progress at once (each holds up to 8 MiB
                                       of its request), or "off"
    "connections_per_peer": "256",     connections one peer address may hold
                                       open, or "off"; raise both behind a proxy
    "revocation_poll": "2s",           how often a replica looks for
                                       denominations another revoked (100ms
                                       to 1h); their coins are refused at once

    "currency": "EUR",                 these five shape a new bank's keys (first
    "rsa_bits": 2048,                  start, or 'bankd keys generate'); once the
    "cipher": "rsa",                   keys exist they are ignored, except that
    "denominations": [],               a currency given must match the keys'
    "master_public_key": ""
  }

"denominations" lists values such as "EUR:0.50" or "EUR:8.00/rsa", each
with the "cipher" unless it names its own; none means powers of two from
0.01 to 81.92. "master_public_key" (hex, from 'bankd keys new-master') makes
the keys for a master key kept offline; none means the bank makes and holds
its own. Relative paths are relative to the config file's directory.
The certificate, key and CA files are reloaded when they change on disk.

` + precedence,
		Example: `bankd config check /etc/blindbank/bankd.json
bankd serve --config /etc/blindbank/bankd.json`,
		Sub: []*cli.Command{configCheckCommand()},
	}
}

func configCheckCommand() *cli.Command {
	return &cli.Command{
		Name:  "check",
		Args:  "FILE",
		NArgs: 1,
		Short: "validate a config file and print the effective configuration",
		Long: `check reads a config file, validates every field and prints the configuration
bankd serve would run with (without flags): each setting with where it came
from — the file, an environment variable, or the default. With --json it
prints the effective configuration as a config file, every field filled in.
An error names the field and the file.`,
		Example: `bankd config check /etc/blindbank/bankd.json
bankd config check --json bankd.json > bankd.effective.json`,
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			fl := &config.Flags{Config: inv.Args[0]}
			cfg, err := settings(inv, fl)
			if err != nil {
				return err
			}
			eff := cfg.Effective()
			if cfg.Data == "" {
				inv.Notef("note: data is not set: bankd serve needs it from --data or $%s", config.EnvData)
			}
			if cfg.KeyPassphraseFile == "" {
				inv.Notef("note: no key_passphrase_file: new keys are written in clear")
			} else if _, err := config.ReadPassphrase(cfg.KeyPassphraseFile); err != nil {
				inv.Notef("note: %v: bankd serve would refuse to start", err)
			}
			keySettings := false
			for _, f := range []string{"currency", "rsa_bits", "cipher", "denominations", "master_public_key"} {
				keySettings = keySettings || cfg.Given(f)
			}
			if cfg.Data != "" && keySettings {
				if info, err := bank.InspectKeyFile(filepath.Join(cfg.Data, bank.KeysFile)); err == nil {
					inv.Notef("note: %s exists (%s): the key settings apply only to a new bank", filepath.Join(cfg.Data, bank.KeysFile), encryptedText(info))
				}
			}
			return inv.Print(eff, func(w io.Writer) {
				fmt.Fprintf(w, "%s: ok\n\n", inv.Args[0])
				t := cli.NewTable(w)
				t.Row("SETTING", "VALUE", "FROM")
				row := func(field string, v any) {
					src := cfg.Source(field).String()
					if s, ok := v.(string); ok && s == "" {
						v = "-"
					}
					t.Row(field, v, src)
				}
				row("data", eff.Data)
				row("listen", eff.Listen)
				row("admin_listen", eff.AdminListen)
				row("plaintext", eff.Plaintext)
				row("currency", eff.Currency)
				row("rsa_bits", eff.RSABits)
				row("cipher", eff.Cipher)
				denoms := strings.Join(eff.Denominations, ",")
				if n := len(eff.Denominations); n > 4 {
					denoms = fmt.Sprintf("%s,%s,…,%s (%d values)", eff.Denominations[0], eff.Denominations[1], eff.Denominations[n-1], n)
				}
				row("denominations", denoms)
				row("master_public_key", eff.MasterPublicKey)
				row("key_passphrase_file", eff.KeyPassphraseFile)
				row("log_format", eff.LogFormat)
				row("log_level", eff.LogLevel)
				row("store", redactStore(eff.Store))
				row("cache_size", eff.CacheSize)
				row("tls_cert_file", eff.TLSCertFile)
				row("tls_key_file", eff.TLSKeyFile)
				row("client_ca_file", eff.ClientCAFile)
				row("client_auth", eff.ClientAuth)
				row("admin_client_ca_file", eff.AdminClientCAFile)
				row("signer", eff.Signer)
				row("rate_limit_per_peer", eff.RateLimitPerPeer)
				row("rate_limit_per_account", eff.RateLimitPerAccount)
				row("rate_limit_refusals_per_account", eff.RateLimitRefusalsPerAccount)
				row("calls_per_peer", eff.CallsPerPeer)
				row("connections_per_peer", eff.ConnectionsPerPeer)
				row("revocation_poll", eff.RevocationPoll)
				t.Flush()
			})
		},
	}
}

// encryptedText describes a key file's protection.
func encryptedText(info bank.KeyFileInfo) string {
	if info.Encrypted {
		return "encrypted, " + info.KDF
	}
	return "NOT encrypted"
}

// redactStore hides the passwords in a PostgreSQL connection string, in
// each form libpq and pgx take one: a URL's user info, a URL's password
// (or sslpassword) query parameter, and a keyword/value string's password
// (or sslpassword) value, quoted or not. A string that parses as neither
// is not shown at all: it may hold a password where the parse went wrong.
func redactStore(s string) string {
	if s == "" {
		return s
	}
	const hidden = "xxxxx"
	unparsed := "(not shown: not a connection string that parses)"
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		u, err := url.Parse(s)
		if err != nil {
			return unparsed
		}
		if u.User != nil {
			if _, ok := u.User.Password(); ok {
				u.User = url.UserPassword(u.User.Username(), hidden)
			}
		}
		q, err := url.ParseQuery(u.RawQuery)
		if err != nil {
			return unparsed
		}
		changed := false
		for k := range q {
			if isPasswordKeyword(k) {
				q[k], changed = []string{hidden}, true
			}
		}
		if changed {
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	out, ok := redactKeywords(s, hidden)
	if !ok {
		return unparsed
	}
	return out
}

func isPasswordKeyword(k string) bool {
	k = strings.ToLower(k)
	return k == "password" || k == "sslpassword"
}

// redactKeywords replaces the password values of a keyword/value
// connection string ("host=db user=bank password='s 3cret'": keyword,
// optional spaces, '=', optional spaces, and a value either in single
// quotes or up to the next space, backslash escaping a character in
// either, as libpq parses it) with hidden; ok is false if s does not
// parse.
func redactKeywords(s, hidden string) (out string, ok bool) {
	var b strings.Builder
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' }
	i := 0
	for {
		start := i
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i == len(s) {
			b.WriteString(s[start:])
			return b.String(), true
		}
		k := i
		for i < len(s) && s[i] != '=' && !isSpace(s[i]) {
			i++
		}
		keyword := s[k:i]
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		// A keyword is lower-case letters and underscores (libpq's all
		// are): a URL not quite at the start (a space before it, the
		// scheme capitalised) is otherwise one "keyword" up to its first
		// '=', user info and password included, which pgx takes too.
		if keyword == "" || strings.Trim(keyword, "abcdefghijklmnopqrstuvwxyz_") != "" || i == len(s) || s[i] != '=' {
			return "", false
		}
		i++
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		b.WriteString(s[start:i])
		v := i
		if i < len(s) && s[i] == '\'' {
			for i++; ; i++ {
				if i >= len(s) {
					return "", false // unterminated quote
				}
				if s[i] == '\\' {
					i++
				} else if s[i] == '\'' {
					i++
					break
				}
			}
		} else {
			for ; i < len(s) && !isSpace(s[i]); i++ {
				if s[i] == '\\' {
					i++
				}
			}
			i = min(i, len(s))
		}
		if isPasswordKeyword(keyword) {
			b.WriteString(hidden)
		} else {
			b.WriteString(s[v:i])
		}
	}
}
